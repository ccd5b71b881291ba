{% macro cdc_multiset_history(staging) -%}
    {#- History of a table without a primary key, as a multiset: a row is identified by a hash of its whole
        image (_cdc_row_hash), and every change event is a version of the image it adds or removes. An
        insert or snapshot read adds a copy of its image, a delete removes one (its before image), an update
        removes its before image (`_cdc_before`, contract.BEFORE_IMAGE: REPLICA IDENTITY FULL sends it) and
        adds its after image, and a truncate is one version of its own (`_cdc_op` 't', every column null)
        that empties the table. Versions that remove a copy, and the truncate, are `_is_deleted`.
        cdc_multiset_current counts the copies of each image from here.

        Events of a table without a key may be spread over the topic's partitions, so an event is applied
        once by its identity (the image and its source position, else its Kafka position), not by being newer
        than the image's latest version. See docs/dbt.md, "Tables without a primary key". -#}
    {{- config(incremental_predicates=['DBT_INTERNAL_DEST._is_current']) -}}
    {%- set columns = cdc_source_columns() -%}
    {%- set present = cdc_relation_columns(staging) -%}
    {%- do cdc_check_contract(staging, columns, present) -%}
    {%- set has_before = not present or '_cdc_before' in present -%}
    {%- set names = [] -%}
    {%- for column in columns -%}
        {%- do names.append(adapter.quote(column.name)) -%}
    {%- endfor -%}
    {%- set by_image = 'partition by _cdc_row_hash order by ' ~ cdc_position_order() -%}
    {%- set bookkeeping = cdc_history_event_columns() -%}
    {%- set applied_position = cdc_applied_position() %}

with

staging as (

    {{ cdc_staging_rows(staging, columns) }}

),

before_images as (

    -- the update's before image in the contract's types, read once
    select
        *,
        {%- if has_before %}
        case when _cdc_before is not null then struct_pack(
            {%- for column in columns %}
            {{ names[loop.index0] }} := {{ cdc_before_value(column, present) }}
            {{- ',' if not loop.last }}
            {%- endfor %}
        ) end as _cdc_before_image
        {%- else %}
        -- no update has carried one yet
        cast(null as struct(
            {%- for column in columns %}
            {{ names[loop.index0] }} {{ column.data_type }}{{ ',' if not loop.last }}
            {%- endfor %}
        )) as _cdc_before_image
        {%- endif %}
    from staging

),

typed as (

    -- the after image in the contract's types; a column Debezium did not send (unchanged TOAST value) is
    -- the before image's, which REPLICA IDENTITY FULL sends whole
    select
        {%- for column in columns %}
        case
            when list_contains(coalesce(_cdc_unavailable_columns, []), '{{ column.name }}')
                then _cdc_before_image.{{ names[loop.index0] }}
            else {{ cdc_typed_value(names[loop.index0], column, present) }}
        end as {{ names[loop.index0] }},
        {%- endfor %}
        _cdc_before_image,
        _cdc_op,
        _cdc_source_ts,
        _cdc_lsn,
        {{ cdc_relation_position(present) }} as _cdc_position,
        _cdc_tx_id,
        _kafka_partition as _cdc_kafka_partition,
        _kafka_offset as _cdc_kafka_offset,
        _batch_id as _cdc_batch_id
    from before_images

),

hashed as (

    select
        *,
        {{ cdc_image_hash(names) }} as _cdc_row_hash,
        md5(cast(to_json(_cdc_before_image) as varchar)) as _cdc_before_hash
    from typed

),

images as (

    -- what each event does to the multiset: +1 copy of the image an insert, read or update writes, -1 of the
    -- image a delete or update removes; an update that changed nothing does nothing
    select
        {%- for name in names %}
        {{ name }},
        {%- endfor %}
        _cdc_row_hash,
        case when _cdc_op = 'd' then -1 when _cdc_op = 't' then 0 else 1 end as _cdc_row_delta,
        {{ bookkeeping | join(', ') }}
    from hashed
    where _cdc_op != 'u' or _cdc_before_hash is distinct from _cdc_row_hash
    union all
    select
        {%- for name in names %}
        _cdc_before_image.{{ name }} as {{ name }},
        {%- endfor %}
        _cdc_before_hash as _cdc_row_hash,
        -1 as _cdc_row_delta,
        {{ bookkeeping | join(', ') }}
    from hashed
    where _cdc_op = 'u' and _cdc_before_hash is not null and _cdc_before_hash != _cdc_row_hash

),

events as (

    -- re-delivered copies of one event (same image, same source position) collapse into the first copy
    select *
    from images
    qualify row_number() over (
        partition by _cdc_row_hash, {{ cdc_event_identity() }}
        order by _cdc_kafka_partition, _cdc_kafka_offset
    ) = 1

),
{%- if is_incremental() %}

applied as (

    -- the latest applied version of every image this run touches: the new versions close it
    select
        {%- for name in names %}
        {{ name }},
        {%- endfor %}
        _cdc_row_hash,
        case when _cdc_op = 't' then 0 when _is_deleted then -1 else 1 end as _cdc_row_delta,
        {%- for name in bookkeeping %}
        {{ applied_position ~ ' as _cdc_position' if name == '_cdc_position' else name }},
        {%- endfor %}
        true as _cdc_is_applied
    from {{ this }} as latest
    where
        _is_current
        and exists (select 1 from events where events._cdc_row_hash = latest._cdc_row_hash)

),

applied_truncate as (

    -- the latest truncate applied: an event from before it that arrives late is gone too
    {{ cdc_latest_truncate(this, applied_position) }}

),

fresh as (

    -- events not applied yet (a copy of an applied one has its image and identity), after the last truncate
    select
        events.*,
        false as _cdc_is_applied
    from events
    left join applied_truncate on true
    where
        not exists (
            select 1
            from {{ this }} as done
            where
                done._cdc_row_hash = events._cdc_row_hash
                and ({{ applied_position }}) is not distinct from events._cdc_position
                and (
                    events._cdc_position is not null
                    or (done._cdc_kafka_partition, done._cdc_kafka_offset)
                    = (events._cdc_kafka_partition, events._cdc_kafka_offset)
                )
        )
        and (
            applied_truncate._cdc_kafka_offset is null
            or {{ cdc_position_after('events', 'applied_truncate') }}
        )

),

sequenced as (

    select * from applied
    union all
    select * from fresh

),
{%- else %}

sequenced as (

    select
        *,
        false as _cdc_is_applied
    from events

),
{%- endif %}

versioned as (

    select
        *,
        _cdc_source_ts as _valid_from,
        lead(_cdc_source_ts) over ({{ by_image }}) as _valid_to,
        lead(_cdc_op) over ({{ by_image }}) is null as _is_current,
        _cdc_row_delta < 0 or _cdc_op = 't' as _is_deleted
    from sequenced

),

final as (

    select
        _cdc_row_hash,
        {%- for name in names %}
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


{% macro cdc_image_hash(names) -%}
    {#- The identity of a row image of a table without a primary key: a hash of all its columns. -#}
    md5(cast(to_json(struct_pack(
        {%- for name in names %}
        {{ name }} := {{ name }}{{ ',' if not loop.last }}
        {%- endfor %}
    )) as varchar))
{%- endmacro %}
