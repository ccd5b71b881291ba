-- The incrementally built daily_sales equals the daily totals recomputed in full from the orders mart; a day
-- without open orders must show zeros or be absent.

with

orders as (

    select * from {{ ref('orders') }}

),

daily_sales as (

    select * from {{ ref('daily_sales') }}

),

expected as (

    select
        order_date,
        count(*) as orders,
        cast(sum(quantity) as bigint) as units_sold
    from orders
    where status = 'open'
    group by order_date

),

actual as (

    select
        order_date,
        orders,
        units_sold
    from daily_sales
    where orders > 0

),

{{ cdc_report_differences('daily_sales') }}
