-- The incrementally built orders mart holds the latest version of every order in the order history.

with

order_versions as (

    select * from {{ ref('inventory__orders__history') }}

),

orders as (

    select * from {{ ref('orders') }}

),

expected as (

    select
        id as order_id,
        order_date,
        purchaser as customer_id,
        product_id,
        quantity,
        case when _is_deleted then 'deleted' else 'open' end as status
    from order_versions
    where _is_current

),

actual as (

    select
        order_id,
        order_date,
        customer_id,
        product_id,
        quantity,
        status
    from orders

),

{{ cdc_report_differences('orders') }}
