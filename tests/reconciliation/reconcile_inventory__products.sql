-- current state of inventory.products = latest version per key, recomputed in full from staging
{{
    cdc_reconciliation(
        ref('inventory__products'),
        source('staging', 'inventory__products'),
        key='id',
    )
}}
