{% macro cdc_multiset_current(history) -%}
    {#- Current state of a table without a primary key, as a multiset: every copy of every row image that
        exists, counted from the table's history model (cdc_multiset_history): the copies its versions add
        and remove after the last truncate. Exact duplicates are several rows, told apart by
        _cdc_row_number (1..copies of the image).

        An incremental build (incremental_strategy 'cdc_apply_multiset', unique_key '_cdc_row_hash') counts
        again every image whose history changed since the last batch it applied (every image after a new
        truncate) and replaces its rows; an image left without copies is one row with _cdc_row_number 0,
        which only removes them. Counting from the whole history of an image, never adding to the stored
        count, makes a build that reads a batch twice harmless. See docs/dbt.md. -#}
    {%- set names = [] -%}
    {%- for column in cdc_source_columns() -%}
        {%- do names.append(adapter.quote(column.name)) -%}
    {%- endfor %}

with

history as (

    select * from {{ history }}

),

last_truncate as (

    {{ cdc_latest_truncate('history') }}

),
{%- if is_incremental() %}

touched as (

    -- the images whose history changed since the last build; after a new truncate, every image there is
    select _cdc_row_hash
    from history
    where _cdc_batch_id > {{ cdc_batch_watermark() }}
    union
    select _cdc_row_hash
    from {{ this }}
    where exists (
        select 1 from history
        where _cdc_op = 't' and _cdc_batch_id > {{ cdc_batch_watermark() }}
    )

),
{%- endif %}

counted as (

    -- per image: the copies its versions after the last truncate leave, and its latest version that adds one
    -- (its values are the image's after image, as staging typed it)
    select
        history.*,
        cast(sum(case when _is_deleted then -1 else 1 end) over (partition by history._cdc_row_hash) as bigint)
            as _cdc_copies
    from history
    left join last_truncate on true
    where
        history._cdc_op != 't'
        and (
            last_truncate._cdc_kafka_offset is null
            or {{ cdc_position_after('history', 'last_truncate') }}
        )
        {%- if is_incremental() %}
        and history._cdc_row_hash in (select _cdc_row_hash from touched)
        {%- endif %}
    qualify row_number() over (
        partition by _cdc_row_hash
        order by
            history._is_deleted,
            history._cdc_position desc nulls last,
            history._cdc_kafka_partition desc,
            history._cdc_kafka_offset desc
    ) = 1

),

images as (
    {%- if is_incremental() %}

    -- an image whose copies are all gone has no row in counted: it keeps its hash, to be removed
    select
        touched._cdc_row_hash,
        {%- for name in names %}
        counted.{{ name }},
        {%- endfor %}
        counted._cdc_source_ts,
        counted._cdc_lsn,
        counted._cdc_op,
        counted._cdc_kafka_partition,
        counted._cdc_kafka_offset,
        counted._cdc_batch_id,
        greatest(coalesce(counted._cdc_copies, 0), 0) as _cdc_copies
    from touched
    left join counted on touched._cdc_row_hash = counted._cdc_row_hash
    {%- else %}

    select *
    from counted
    where _cdc_copies > 0
    {%- endif %}

),

final as (

    select
        {%- for name in names %}
        {{ name }},
        {%- endfor %}
        _cdc_row_hash,
        unnest(
            case when _cdc_copies > 0 then range(1, _cdc_copies + 1) else [0] end
        ) as _cdc_row_number,
        _cdc_source_ts,
        _cdc_lsn,
        now() as _cdc_updated_at,
        _cdc_op,
        _cdc_kafka_partition,
        _cdc_kafka_offset,
        _cdc_batch_id
    from images

)

select * from final
{%- endmacro %}


{% macro get_incremental_cdc_apply_multiset_sql(arg_dict) -%}
    {#- Incremental strategy 'cdc_apply_multiset' for the current state of a table without a key: the new
        rows replace every copy of their images (unique_key _cdc_row_hash); a row with _cdc_row_number 0
        (no copy left) only removes them. -#}
    {%- set target = arg_dict['target_relation'] -%}
    {%- set source = arg_dict['temp_relation'] -%}
    {%- set dest_columns = get_quoted_csv(arg_dict['dest_columns'] | map(attribute='name')) -%}

    delete from {{ target }}
    where _cdc_row_hash in (select _cdc_row_hash from {{ source }});

    insert into {{ target }} ({{ dest_columns }})
    select {{ dest_columns }}
    from {{ source }}
    where _cdc_row_number > 0
{%- endmacro %}
