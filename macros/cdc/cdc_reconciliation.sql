{% macro cdc_reconciliation(current, staging, key) -%}
    {#- Rows where a current-state model differs from the latest state per key recomputed in full from
        staging. Deliberately written apart from cdc_history/cdc_current: the latest event per key decides,
        a key is gone when that event is a delete or precedes the last truncate, and a column the event did
        not send (TOAST) takes the value of the latest event that sent it. Empty when they agree. -#}
    {%- set key = [key] if key is string else key -%}
    {%- set columns = [] -%}
    {%- if execute -%}
        {%- for column in adapter.get_columns_in_relation(current) -%}
            {%- if not cdc_is_bookkeeping(column.name) -%}
                {%- do columns.append({'name': column.name, 'data_type': column.data_type}) -%}
            {%- endif -%}
        {%- endfor -%}
    {%- endif -%}
    {%- set types = {} -%}
    {%- for column in columns -%}
        {%- do types.update({column.name: column.data_type}) -%}
    {%- endfor -%}
    {%- set values = columns | rejectattr('name', 'in', key) | list -%}
    {%- set epoch_units = cdc_model_epoch_units(current) -%}
    {%- set staged = cdc_relation_columns(staging) -%}
    {#- The history model (built before `current`, from which `current` is built) tells the last batch the
        build has read; staging rows landed after it are for the next build. -#}
    {%- set history = adapter.get_relation(
        database=current.database, schema=current.schema, identifier=current.identifier ~ '__history'
    ) if execute else none -%}
    {%- set newest_first = '_source_position desc nulls first, _kafka_partition desc, _kafka_offset desc' -%}
    {%- if not cdc_relation_exists(staging) %}

-- no staging table yet: the model must be empty
select
    'not expected in the model (no staging table)' as problem,
    *
from {{ current }}
    {%- else %}

with

staging as (

    -- only the batches the models have read: the ingester keeps landing while dbt builds and tests
    select
        *,
        {{ cdc_relation_position(staged) }} as _source_position
    from {{ staging }}
    {%- if history is not none %}
    where _batch_id <= (select coalesce(max(_cdc_batch_id), -1) from {{ history }})
    {%- endif %}

),

last_truncate as (

    select
        _source_position,
        _kafka_partition,
        _kafka_offset
    from staging
    where _cdc_op = 't'
    order by {{ newest_first }}
    limit 1

),

latest_event as (

    select *
    from staging
    where _cdc_op != 't'
    qualify row_number() over (partition by {{ key | join(', ') }} order by {{ newest_first }}) = 1

),

surviving as (

    select latest_event.*
    from latest_event
    left join last_truncate on true
    where
        latest_event._cdc_op != 'd'
        and (
            last_truncate._source_position is null and last_truncate._kafka_offset is null
            or coalesce(
                latest_event._source_position > last_truncate._source_position,
                (latest_event._kafka_partition, latest_event._kafka_offset)
                > (last_truncate._kafka_partition, last_truncate._kafka_offset)
            )
        )

),
{%- for column in values %}

sent_{{ loop.index }} as (

    -- latest value of {{ column.name }} that was actually sent
    select
        {{ key | join(', ') }},
        {%- if (column.name | lower) in staged %}
        {{ adapter.quote(column.name) }}
        {%- else %}
        null as {{ adapter.quote(column.name) }}
        {%- endif %}
    from staging
    where
        _cdc_op in ('r', 'c', 'u')
        and not list_contains(coalesce(_cdc_unavailable_columns, []), '{{ column.name }}')
    qualify row_number() over (partition by {{ key | join(', ') }} order by {{ newest_first }}) = 1

),
{%- endfor %}

expected as (

    select
        {%- for name in key %}
        cast(surviving.{{ name }} as {{ types.get(name, 'varchar') }}) as {{ name }},
        {%- endfor %}
        {%- for column in values %}
        {{ cdc_cast(
            'sent_' ~ loop.index ~ '.' ~ adapter.quote(column.name),
            column.data_type,
            staged.get(column.name | lower),
            epoch_units.get(column.name),
        ) }} as {{ adapter.quote(column.name) }}{{ ',' if not loop.last }}
        {%- endfor %}
    from surviving
    {%- for column in values %}
    left join sent_{{ loop.index }} using ({{ key | join(', ') }})
    {%- endfor %}

),

actual as (

    select
        {%- for column in columns %}
        {{ adapter.quote(column.name) }}{{ ',' if not loop.last }}
        {%- endfor %}
    from {{ current }}

),

{{ cdc_report_differences('the model') }}
    {%- endif %}
{%- endmacro %}


{#- The end of a comparison query: given CTEs `expected` and `actual` with the same columns, one row per
    difference, labelled. Every row counts (except all), so duplicates are differences too. -#}
{% macro cdc_report_differences(label) -%}
missing as (

    select * from expected
    except all
    select * from actual

),

unexpected as (

    select * from actual
    except all
    select * from expected

)

select
    'missing from {{ label }}' as problem,
    *
from missing
union all
select
    'not expected in {{ label }}' as problem,
    *
from unexpected
{%- endmacro %}


{% macro cdc_model_epoch_units(relation) -%}
    {#- {column: meta.epoch_unit} of the model built into `relation`, from its YAML (see cdc_cast). -#}
    {%- set units = {} -%}
    {%- if execute -%}
        {%- for node in graph.nodes.values() if node.resource_type == 'model'
            and (node.alias or node.name) == relation.identifier -%}
            {%- for column in node.columns.values() -%}
                {%- do units.update({column.name: (column.meta or {}).get('epoch_unit')}) -%}
            {%- endfor -%}
        {%- endfor -%}
    {%- endif -%}
    {{ return(units) }}
{%- endmacro %}
