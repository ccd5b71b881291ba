-- current state of inventory.orders = latest version per key, recomputed in full from staging
{{
    cdc_reconciliation(
        ref('inventory__orders'),
        source('staging', 'inventory__orders'),
        key='id',
    )
}}
