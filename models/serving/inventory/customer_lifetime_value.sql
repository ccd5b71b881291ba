-- depends_on: {{ ref('inventory__orders__history') }}
{{
    config(
        materialized='incremental',
        unique_key='customer_id',
        incremental_strategy='delete+insert',
        on_schema_change='append_new_columns',
    )
}}

with

customer_versions as (

    select * from {{ ref('inventory__customers__history') }}

),

orders as (

    select * from {{ ref('orders') }}

),

processed as (

    select
        greatest(
            (select max(customer_versions._cdc_batch_id) from customer_versions),
            (select max(orders._cdc_batch_id) from orders)
        ) as _cdc_batch_id,
        (select max(customer_versions._cdc_batch_id) from customer_versions) as _cdc_customer_batch_id,
        (select max(orders._cdc_order_batch_id) from orders) as _cdc_order_batch_id,
        (select max(orders._cdc_product_batch_id) from orders) as _cdc_product_batch_id

),
{%- if is_incremental() %}

order_versions as (

    select * from {{ ref('inventory__orders__history') }}

),

customers_in_scope as (

    -- customers with a new version, and every customer a changed order was ever placed by; one watermark per
    -- input (the customers history and the orders mart's own inputs are read at different moments)
    select id as customer_id
    from customer_versions
    where _cdc_batch_id > {{ cdc_batch_watermark('_cdc_customer_batch_id') }}

    union

    select order_versions.purchaser as customer_id
    from order_versions
    inner join orders
        on order_versions.id = orders.order_id
    where
        orders._cdc_order_batch_id > {{ cdc_batch_watermark('_cdc_order_batch_id') }}
        or orders._cdc_product_batch_id > {{ cdc_batch_watermark('_cdc_product_batch_id') }}

),
{%- endif %}

latest_customers as (

    select customer_versions.*
    from customer_versions
    {% if is_incremental() -%}
    inner join customers_in_scope
        on customer_versions.id = customers_in_scope.customer_id
    {% endif -%}
    where customer_versions._is_current

),

order_totals as (

    select
        customer_id,
        count(*) as orders,
        sum(quantity) as units_bought,
        sum(order_weight) as weight_bought,
        min(order_date) as first_order_date,
        max(order_date) as last_order_date
    from orders
    where status = 'open'
    group by customer_id

),

final as (

    select
        latest_customers.id as customer_id,
        latest_customers.first_name,
        latest_customers.last_name,
        latest_customers.email,
        case when latest_customers._is_deleted then 'deleted' else 'active' end as customer_status,
        coalesce(order_totals.orders, 0) as orders,
        cast(coalesce(order_totals.units_bought, 0) as bigint) as units_bought,
        coalesce(order_totals.weight_bought, 0) as weight_bought,
        order_totals.first_order_date,
        order_totals.last_order_date,
        processed._cdc_batch_id,
        processed._cdc_customer_batch_id,
        processed._cdc_order_batch_id,
        processed._cdc_product_batch_id
    from latest_customers
    cross join processed
    left join order_totals
        on latest_customers.id = order_totals.customer_id

)

select * from final
