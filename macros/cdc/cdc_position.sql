{#- Source position of a change event (docs/staging-contract.md): `_cdc_position`, every connector's position
    in its source's log as its connector orders changes (ingest/core/position.py; a list compared element by
    element), then the Kafka partition and offset. Every CDC relation of this project names them
    _cdc_position, _cdc_kafka_partition and _cdc_kafka_offset. -#}

{% macro cdc_position_order(alias=none) -%}
    {%- set p = (alias ~ '.') if alias else '' -%}
    {{ p }}_cdc_position, {{ p }}_cdc_kafka_partition, {{ p }}_cdc_kafka_offset
{%- endmacro %}


{% macro cdc_position_after(a, b) -%}
    {#- True when event `a` comes after event `b` in the source. Two events at one source position are one
        change (a re-delivered copy), so equal positions are not "after"; only without a source position does
        the Kafka position decide. -#}
    case
        when {{ a }}._cdc_position is not null and {{ b }}._cdc_position is not null
            then {{ a }}._cdc_position > {{ b }}._cdc_position
        else ({{ a }}._cdc_kafka_partition, {{ a }}._cdc_kafka_offset)
            > ({{ b }}._cdc_kafka_partition, {{ b }}._cdc_kafka_offset)
    end
{%- endmacro %}


{% macro cdc_event_identity() -%}
    {#- Partition expression that makes re-delivered copies of one event (same source position) equal. Events
        without a source position are told apart by their Kafka position. -#}
    _cdc_position,
    case when _cdc_position is null then _cdc_kafka_partition end,
    case when _cdc_position is null then _cdc_kafka_offset end
{%- endmacro %}


{% macro cdc_relation_position(columns) -%}
    {#- The source position of the rows of a staging table or history model with these columns
        (cdc_relation_columns): its `_cdc_position`; the LSN as a one-element position for rows written before
        it had the column, and for unit-test fixtures (whose columns are not known). -#}
    {%- set from_lsn = 'case when _cdc_lsn is not null then [_cdc_lsn] end' -%}
    {%- if columns and '_cdc_position' in columns -%}
        coalesce(_cdc_position, {{ from_lsn }})
    {%- else -%}
        {{ from_lsn }}
    {%- endif -%}
{%- endmacro %}


{% macro cdc_applied_position() -%}
    {#- cdc_relation_position of the model being built (`this`, on an incremental build). A unit test's `this`
        is a fixture (a CTE name): its columns are not known. -#}
    {%- set columns = cdc_relation_columns(this) if is_incremental() and this is not string else {} -%}
    {{ return(cdc_relation_position(columns)) }}
{%- endmacro %}


{% macro cdc_latest_truncate(relation, position='_cdc_position') -%}
    {#- The latest truncate in a history relation: its source position (`position`, the SQL reading it) and
        Kafka position, one row or none. -#}
    select
        {{ position }} as _cdc_position,
        _cdc_kafka_partition,
        _cdc_kafka_offset
    from {{ relation }}
    where _cdc_op = 't'
    order by _cdc_position desc nulls first, _cdc_kafka_partition desc, _cdc_kafka_offset desc
    limit 1
{%- endmacro %}


{% macro cdc_batch_watermark(column='_cdc_batch_id') -%}
    {#- The last batch an incremental model has applied (-1 before the first), as a constant: read before the
        model's query runs and written into it, so that DuckDB pushes `_batch_id > <constant>` into the scan
        and skips the data files of older batches by their min/max statistics (a scalar subquery becomes a
        join and every file is read; docs/benchmarks.md, "Incremental cost"). Builds of one target are
        serialized (the plugin's lock), so the model cannot change between this read and the query. A unit
        test's `this` is a fixture: there the subquery stays. -#}
    {%- set subquery = '(select coalesce(max(' ~ column ~ '), -1) from ' ~ this ~ ')' -%}
    {%- if not execute or cdc_is_fixture(this) or '__dbt__cte__' in (this | string) -%}
        {{ subquery }}
    {%- else -%}
        {%- set watermark = run_query('select ' ~ subquery).columns[0].values()[0] -%}
        {{ watermark | int }}
    {%- endif %}
{%- endmacro %}
