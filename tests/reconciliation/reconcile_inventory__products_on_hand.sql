-- inventory__products_on_hand equals the latest state per key recomputed in full from staging
{{ cdc_reconciliation(ref('inventory__products_on_hand'), source('staging', 'inventory__products_on_hand'), key='product_id') }}
