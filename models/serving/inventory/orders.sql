{{
    config(
        materialized='incremental',
        unique_key='order_id',
        incremental_strategy='merge',
        on_schema_change='append_new_columns',
    )
}}

with

order_versions as (

    select * from {{ ref('inventory__orders__history') }}

),

product_versions as (

    select * from {{ ref('inventory__products__history') }}

),

product_batches as (

    select
        id as product_id,
        max(_cdc_batch_id) as _cdc_batch_id
    from product_versions
    group by id

),
{%- if is_incremental() %}

changed_orders as (

    -- orders with a new version since the last build, and orders of products with one (a product can land
    -- after the order that names it, or its earlier version can be corrected). One watermark per input: the
    -- two history models read staging at different moments, so one input's batches say nothing about the
    -- other's
    select id as order_id
    from order_versions
    where _cdc_batch_id > {{ cdc_batch_watermark('_cdc_order_batch_id') }}

    union

    select order_versions.id as order_id
    from order_versions
    inner join product_batches
        on order_versions.product_id = product_batches.product_id
    where product_batches._cdc_batch_id > {{ cdc_batch_watermark('_cdc_product_batch_id') }}

),
{%- endif %}

versions_in_scope as (

    select *
    from order_versions
    {%- if is_incremental() %}
    where id in (select changed_orders.order_id from changed_orders)
    {%- endif %}

),

order_lifecycle as (

    select
        id as order_id,
        min(_valid_from) as placed_at,
        max(_cdc_batch_id) as _cdc_batch_id
    from versions_in_scope
    group by id

),

latest_versions as (

    select *
    from versions_in_scope
    where _is_current

),

final as (

    select
        latest_versions.id as order_id,
        latest_versions.order_date,
        latest_versions.purchaser as customer_id,
        latest_versions.product_id,
        product_at_order.name as product_name,
        latest_versions.quantity,
        product_at_order.weight as unit_weight,
        latest_versions.quantity * product_at_order.weight as order_weight,
        case when latest_versions._is_deleted then 'deleted' else 'open' end as status,
        order_lifecycle.placed_at,
        latest_versions._valid_from as last_changed_at,
        case when latest_versions._is_deleted then latest_versions._valid_from end as deleted_at,
        greatest(order_lifecycle._cdc_batch_id, coalesce(product_batches._cdc_batch_id, -1)) as _cdc_batch_id,
        order_lifecycle._cdc_batch_id as _cdc_order_batch_id,
        coalesce(product_batches._cdc_batch_id, -1) as _cdc_product_batch_id
    from latest_versions
    inner join order_lifecycle
        on latest_versions.id = order_lifecycle.order_id
    left join product_versions as product_at_order
        on
            latest_versions.product_id = product_at_order.id
            and not product_at_order._is_deleted
            and order_lifecycle.placed_at >= product_at_order._valid_from
            and (product_at_order._valid_to is null or order_lifecycle.placed_at < product_at_order._valid_to)
    left join product_batches
        on latest_versions.product_id = product_batches.product_id

)

select * from final
