-- current state of inventory.type_zoo = latest version per key, recomputed in full from staging
{{
    cdc_reconciliation(
        ref('inventory__type_zoo'),
        source('staging', 'inventory__type_zoo'),
        key='id',
    )
}}
