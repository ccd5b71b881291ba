-- current state of inventory.customers = latest version per key, recomputed in full from staging
{{
    cdc_reconciliation(
        ref('inventory__customers'),
        source('staging', 'inventory__customers'),
        key='id',
    )
}}
