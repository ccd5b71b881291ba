{% macro cdc_current(history) -%}
    {#- Current state of one source table: one row per live key, taken from its history model.

        history  the table's history model (ref('<schema>__<table>__history')), built by cdc_history

        The model's unique_key is the primary key. A full build keeps every current, not deleted version. An
        incremental build (incremental_strategy 'cdc_apply') reads the current version of every key whose
        history changed since the last batch it applied: deleted versions remove the key, the others replace
        it. See docs/dbt.md. -#}
    {%- set columns = cdc_source_columns() %}

with

history as (

    select * from {{ history }}

),

latest as (

    select *
    from history
    where
        _is_current
        {%- if is_incremental() %}
        and _cdc_batch_id > {{ cdc_batch_watermark() }}
        {%- else %}
        and not _is_deleted
        {%- endif %}

),

final as (

    select
        {%- for column in columns %}
        {{ adapter.quote(column.name) }},
        {%- endfor %}
        _cdc_source_ts,
        _cdc_lsn,
        now() as _cdc_updated_at,
        _cdc_op,
        _cdc_kafka_partition,
        _cdc_kafka_offset,
        _cdc_batch_id
    from latest

)

select * from final
{%- endmacro %}
