-- The incrementally built customer_lifetime_value equals the per-customer totals recomputed in full from the
-- customers history and the orders mart.

with

customer_versions as (

    select * from {{ ref('inventory__customers__history') }}

),

orders as (

    select * from {{ ref('orders') }}

),

customer_lifetime_value as (

    select * from {{ ref('customer_lifetime_value') }}

),

order_totals as (

    select
        customer_id,
        count(*) as orders,
        cast(sum(quantity) as bigint) as units_bought
    from orders
    where status = 'open'
    group by customer_id

),

expected as (

    select
        customer_versions.id as customer_id,
        customer_versions.email,
        case when customer_versions._is_deleted then 'deleted' else 'active' end as customer_status,
        coalesce(order_totals.orders, 0) as orders,
        coalesce(order_totals.units_bought, 0) as units_bought
    from customer_versions
    left join order_totals
        on customer_versions.id = order_totals.customer_id
    where customer_versions._is_current

),

actual as (

    select
        customer_id,
        email,
        customer_status,
        orders,
        units_bought
    from customer_lifetime_value

),

{{ cdc_report_differences('customer_lifetime_value') }}
