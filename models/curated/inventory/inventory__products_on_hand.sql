{{ config(unique_key='product_id', incremental_strategy='cdc_apply') }}

{{ cdc_current(ref('inventory__products_on_hand__history')) }}
