{{ config(materialized='table') }}

with

products as (

    select * from {{ ref('inventory__products') }}

),

stock as (

    select * from {{ ref('inventory__products_on_hand') }}

),

final as (

    select
        products.id as product_id,
        products.name as product_name,
        products.weight as unit_weight,
        coalesce(stock.quantity, 0) as quantity_on_hand,
        stock.product_id is not null as has_stock_record,
        coalesce(stock.quantity, 0) <= 0 as is_out_of_stock,
        stock._cdc_source_ts as stock_changed_at
    from products
    left join stock
        on products.id = stock.product_id

)

select * from final
