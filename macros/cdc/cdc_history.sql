{% macro cdc_history(staging, key) -%}
    {#- SCD type 2 of one staging table: every version of every key, bounded by source commit time.

        staging  the staging relation (source('staging', '<schema>__<table>'))
        key      the primary-key column(s); none for a table without a primary key, whose history is then
                 cdc_multiset_history's (versions of each row image, keyed by its hash)

        The model's contract supplies the column list and types. Incremental runs read only batches after
        the last one applied and continue each touched key from its latest applied version. See docs/dbt.md. -#}
    {#- Only a current version can be rewritten (closed by a new one): the MERGE need not read the others. -#}
    {{- config(incremental_predicates=['DBT_INTERNAL_DEST._is_current']) -}}
    {%- if not key -%}
        {{ return(cdc_multiset_history(staging)) }}
    {%- endif -%}
    {%- set key = [key] if key is string else key -%}
    {%- set columns = cdc_source_columns() -%}
    {%- set present = cdc_relation_columns(staging) -%}
    {%- do cdc_check_contract(staging, columns, present) -%}
    {%- set key_columns = [] -%}
    {%- for name in key -%}
        {%- do key_columns.append(adapter.quote(name)) -%}
    {%- endfor -%}
    {%- set value_columns = columns | rejectattr('name', 'in', key) | list -%}
    {%- set value_names = [] -%}
    {%- for column in value_columns -%}
        {%- do value_names.append(adapter.quote(column.name)) -%}
    {%- endfor -%}
    {%- set by_key = 'partition by ' ~ key_columns | join(', ') ~ ' order by ' ~ cdc_position_order() -%}
    {%- set bookkeeping = cdc_history_event_columns() -%}
    {%- set applied_position = cdc_applied_position() %}

with

staging as (

    {{ cdc_staging_rows(staging, columns) }}

),

typed as (

    select
        {%- for column in columns %}
        {{ cdc_typed_column(column, present) }},
        {%- endfor %}
        _cdc_op,
        _cdc_source_ts,
        _cdc_lsn,
        {{ cdc_relation_position(present) }} as _cdc_position,
        _cdc_tx_id,
        _kafka_partition as _cdc_kafka_partition,
        _kafka_offset as _cdc_kafka_offset,
        _batch_id as _cdc_batch_id,
        coalesce(_cdc_unavailable_columns, []) as _cdc_unavailable_columns
    from staging

),

events as (

    -- change events; re-delivered copies of one event (same key, same LSN) collapse into the first copy
    select *
    from typed
    where _cdc_op != 't'
    qualify row_number() over (
        partition by {{ key_columns | join(', ') }}, {{ cdc_event_identity() }}
        order by _cdc_kafka_partition, _cdc_kafka_offset
    ) = 1

),

truncates as (

    select
        _cdc_source_ts,
        _cdc_lsn,
        _cdc_position,
        _cdc_tx_id,
        _cdc_kafka_partition,
        _cdc_kafka_offset,
        _cdc_batch_id
    from typed
    where _cdc_op = 't'
    qualify row_number() over (
        partition by {{ cdc_event_identity() }}
        order by _cdc_kafka_partition, _cdc_kafka_offset
    ) = 1

),
{%- if is_incremental() %}

applied as (

    -- the latest applied version of every key this run touches (of every live key when a truncate came)
    select
        {%- for name in key_columns + value_names + bookkeeping %}
        {%- if name == '_cdc_position' %}
        {{ applied_position }} as _cdc_position,
        {%- else %}
        {{ name }},
        {%- endif %}
        {%- endfor %}
        cast([] as varchar []) as _cdc_unavailable_columns,
        true as _cdc_is_applied
    from {{ this }} as latest
    where
        _is_current
        and (
            exists (
                select 1
                from events
                where
                    {%- for name in key_columns %}
                    events.{{ name }} = latest.{{ name }}{{ ' and' if not loop.last }}
                    {%- endfor %}
            )
            or (not _is_deleted and exists (select 1 from truncates))
        )

),

applied_truncate as (

    -- the latest truncate applied: an event from before it that arrives late is gone too
    {{ cdc_latest_truncate(this, applied_position) }}

),

fresh as (

    -- events after the applied version of their key (or, for a key without one, after the last truncate);
    -- older ones and re-deliveries were applied already
    select
        events.*,
        false as _cdc_is_applied
    from events
    left join applied
        on
            {%- for name in key_columns %}
            events.{{ name }} = applied.{{ name }}{{ ' and' if not loop.last }}
            {%- endfor %}
    left join applied_truncate on true
    where
        case
            when applied.{{ key_columns[0] }} is not null then {{ cdc_position_after('events', 'applied') }}
            when applied_truncate._cdc_kafka_offset is not null
                then {{ cdc_position_after('events', 'applied_truncate') }}
            else true
        end

),
{%- else %}

fresh as (

    select
        *,
        false as _cdc_is_applied
    from events

),
{%- endif %}

truncated as (

    -- a truncate deletes every row that exists before it: one deletion per key it can meet
    select
        {%- for name in key_columns %}
        candidates.{{ name }},
        {%- endfor %}
        't' as _cdc_op,
        truncates.*,
        cast([] as varchar []) as _cdc_unavailable_columns,
        false as _cdc_is_applied
    from (
        {%- if is_incremental() %}
        select {{ key_columns | join(', ') }} from applied where _cdc_op not in ('d', 't')
        union
        {%- endif %}
        select distinct {{ key_columns | join(', ') }} from fresh
    ) as candidates
    cross join truncates

),

sequenced as (

    {%- if is_incremental() %}
    select * from applied
    union all by name
    {%- endif %}
    select * from fresh
    union all by name
    select * from truncated

),

effective as (

    -- a new truncate deletion only counts where the key was live just before it
    select *
    from sequenced
    qualify not (
        _cdc_op = 't'
        and not _cdc_is_applied
        and coalesce(lag(_cdc_op) over ({{ by_key }}), 'd') in ('d', 't')
    )

),

carried as (

    -- a column Debezium did not send (unchanged TOAST value), and every column of a deletion, takes the
    -- value of the key's previous version; without one, the event's own image stands
    select
        {%- for name in key_columns %}
        {{ name }},
        {%- endfor %}
        {%- for column in value_columns %}
        {%- set name = adapter.quote(column.name) %}
        struct_extract(coalesce(
            last_value(
                case
                    when _cdc_is_applied
                        or (
                            _cdc_op not in ('d', 't')
                            and not list_contains(_cdc_unavailable_columns, '{{ column.name }}')
                        )
                        then struct_pack(v := {{ name }})
                end ignore nulls
            ) over ({{ by_key }} rows between unbounded preceding and current row),
            struct_pack(v := {{ name }})
        ), 'v') as {{ name }},
        {%- endfor %}
        {%- for name in bookkeeping %}
        {{ name }},
        {%- endfor %}
        _cdc_is_applied
    from effective

),

versioned as (

    select
        *,
        _cdc_source_ts as _valid_from,
        lead(_cdc_source_ts) over ({{ by_key }}) as _valid_to,
        lead(_cdc_op) over ({{ by_key }}) is null as _is_current,
        _cdc_op in ('d', 't') as _is_deleted
    from carried

),

final as (

    select
        {%- for name in key_columns %}
        {{ name }},
        {%- endfor %}
        {%- for name in value_names %}
        {{ name }},
        {%- endfor %}
        _valid_from,
        _valid_to,
        _is_current,
        _is_deleted,
        {%- for name in bookkeeping %}
        {{ name }},
        {%- endfor %}
        now() as _cdc_updated_at
    from versioned
    -- an applied version is written again only when a newer one closed it
    where not _cdc_is_applied or not _is_current

)

select * from final
{%- endmacro %}



{% macro cdc_staging_rows(staging, columns) -%}
    {#- The staging rows a history build reads: those of batches after the model's watermark (all on a full
        build); none, with a log warning, while the ingester has not created the staging table. -#}
    {%- if cdc_relation_exists(staging) %}
    select * from {{ staging }}
    {%- if is_incremental() %}
    where _batch_id > {{ cdc_batch_watermark() }}
    {%- endif %}
    {%- else %}
    {%- do log("warning: " ~ staging ~ " does not exist (yet): " ~ model.name ~ " reads no events", info=true) %}
    -- the ingester has not created the staging table yet: no events
    select
        {%- for column in columns %}
        cast(null as {{ column.data_type }}) as {{ adapter.quote(column.name) }},
        {%- endfor %}
        cast(null as varchar) as _cdc_op,
        cast(null as timestamptz) as _cdc_source_ts,
        cast(null as bigint) as _cdc_lsn,
        cast(null as bigint []) as _cdc_position,
        cast(null as varchar) as _cdc_tx_id,
        cast(null as integer) as _kafka_partition,
        cast(null as bigint) as _kafka_offset,
        cast(null as bigint) as _batch_id,
        cast(null as timestamptz) as _ingested_at,
        cast(null as varchar []) as _cdc_unavailable_columns,
        cast(null as json) as _cdc_before
    where false
    {%- endif %}
{%- endmacro %}
