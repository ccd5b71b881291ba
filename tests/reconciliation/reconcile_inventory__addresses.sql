-- current state of inventory.addresses = latest version per key, recomputed in full from staging
{{
    cdc_reconciliation(
        ref('inventory__addresses'),
        source('staging', 'inventory__addresses'),
        key='id',
    )
}}
