{{ config(materialized='table') }}

with

orders as (

    select * from {{ ref('orders') }}

),

final as (

    select
        status,
        count(*) as orders,
        cast(coalesce(sum(quantity), 0) as bigint) as units,
        coalesce(sum(order_weight), 0) as order_weight
    from orders
    group by status

)

select * from final
