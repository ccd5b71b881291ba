-- depends_on: {{ ref('inventory__orders__history') }}
{{
    config(
        materialized='incremental',
        unique_key='order_date',
        incremental_strategy='delete+insert',
        on_schema_change='append_new_columns',
    )
}}

with

orders as (

    select * from {{ ref('orders') }}

),

processed as (

    select
        max(_cdc_batch_id) as _cdc_batch_id,
        max(_cdc_order_batch_id) as _cdc_order_batch_id,
        max(_cdc_product_batch_id) as _cdc_product_batch_id
    from orders

),
{%- if is_incremental() %}

order_versions as (

    select * from {{ ref('inventory__orders__history') }}

),

changed_orders as (

    select
        order_id,
        order_date
    from orders
    -- one watermark per input of the orders mart (see orders.sql): _cdc_batch_id, their greatest, can stay
    -- below what was applied when one input catches up with the other
    where
        _cdc_order_batch_id > {{ cdc_batch_watermark('_cdc_order_batch_id') }}
        or _cdc_product_batch_id > {{ cdc_batch_watermark('_cdc_product_batch_id') }}

),

order_dates as (

    -- the dates changed orders are on now, and every date they were ever on (an order can move)
    select order_date from changed_orders

    union

    select order_versions.order_date
    from order_versions
    inner join changed_orders
        on order_versions.id = changed_orders.order_id

),
{%- else %}

order_dates as (

    select distinct order_date from orders

),
{%- endif %}

daily_totals as (

    select
        order_date,
        count(*) filter (where status = 'open') as orders,
        count(distinct customer_id) filter (where status = 'open') as customers,
        coalesce(sum(quantity) filter (where status = 'open'), 0) as units_sold,
        coalesce(sum(order_weight) filter (where status = 'open'), 0) as weight_sold,
        count(*) filter (where status = 'deleted') as deleted_orders
    from orders
    where order_date in (select order_dates.order_date from order_dates)
    group by order_date

),

final as (

    select
        order_dates.order_date,
        coalesce(daily_totals.orders, 0) as orders,
        coalesce(daily_totals.customers, 0) as customers,
        cast(coalesce(daily_totals.units_sold, 0) as bigint) as units_sold,
        coalesce(daily_totals.weight_sold, 0) as weight_sold,
        coalesce(daily_totals.deleted_orders, 0) as deleted_orders,
        processed._cdc_batch_id,
        processed._cdc_order_batch_id,
        processed._cdc_product_batch_id
    from order_dates
    cross join processed
    left join daily_totals
        on order_dates.order_date = daily_totals.order_date
    where order_dates.order_date is not null

)

select * from final
