{{ config(materialized='table') }}

with

stock_versions as (

    select * from {{ ref('inventory__products_on_hand__history') }}

),

committed_versions as (

    -- the state at transaction boundaries: of several versions of a product in one source transaction only
    -- the last counts (a stock take TRUNCATEs the table and inserts the counted rows again in one
    -- transaction; the truncate's deletion is no stock-out when the row is back at commit)
    select *
    from stock_versions
    qualify
        _cdc_tx_id is null
        or _cdc_tx_id is distinct from lead(_cdc_tx_id) over (
            partition by product_id order by {{ cdc_position_order() }}
        )

),

flagged as (

    -- a product is out of stock while its stock record says 0 or less, or is gone (deleted, truncated)
    select
        product_id,
        _valid_from,
        _valid_to,
        _cdc_op,
        _is_deleted or quantity <= 0 as is_out,
        {{ cdc_position_order() }},
        struct_pack(
            source := _cdc_position, kafka_partition := _cdc_kafka_partition, kafka_offset := _cdc_kafka_offset
        ) as source_position
    from committed_versions

),

islands as (

    -- consecutive versions with the same is_out form one period
    select
        *,
        row_number() over (partition by product_id order by {{ cdc_position_order() }})
        - row_number() over (partition by product_id, is_out order by {{ cdc_position_order() }}) as period
    from flagged

),

periods as (

    select
        product_id,
        period,
        min(_valid_from) as started_at,
        max(_valid_to) as ended_at,
        arg_min(_cdc_op, source_position) as first_op,
        bool_or(_valid_to is null) as is_ongoing
    from islands
    where is_out
    group by product_id, period

),

final as (

    select
        product_id,
        cast(row_number() over (partition by product_id order by started_at) as integer) as stock_out_number,
        started_at,
        case when is_ongoing then null else ended_at end as ended_at,
        is_ongoing,
        case first_op
            when 't' then 'stock table truncated'
            when 'd' then 'stock record deleted'
            else 'quantity zero or less'
        end as cause
    from periods

)

select * from final
