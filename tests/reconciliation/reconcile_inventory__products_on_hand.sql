-- current state of inventory.products_on_hand = latest version per key, recomputed in full from staging
{{
    cdc_reconciliation(
        ref('inventory__products_on_hand'),
        source('staging', 'inventory__products_on_hand'),
        key='product_id',
    )
}}
