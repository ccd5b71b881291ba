{#- Source position of a change event (docs/staging-contract.md): the LSN where the source has one, then the
    Kafka partition and offset. Every CDC relation of this project names them _cdc_lsn,
    _cdc_kafka_partition and _cdc_kafka_offset. -#}

{% macro cdc_position_order(alias=none) -%}
    {%- set p = (alias ~ '.') if alias else '' -%}
    {{ p }}_cdc_lsn, {{ p }}_cdc_kafka_partition, {{ p }}_cdc_kafka_offset
{%- endmacro %}


{% macro cdc_position_after(a, b) -%}
    {#- True when event `a` comes after event `b` in the source. Two events with one LSN are one change (a
        re-delivered copy), so equal LSNs are not "after"; only without an LSN does the Kafka position decide. -#}
    case
        when {{ a }}._cdc_lsn is not null and {{ b }}._cdc_lsn is not null
            then {{ a }}._cdc_lsn > {{ b }}._cdc_lsn
        else ({{ a }}._cdc_kafka_partition, {{ a }}._cdc_kafka_offset)
            > ({{ b }}._cdc_kafka_partition, {{ b }}._cdc_kafka_offset)
    end
{%- endmacro %}


{% macro cdc_event_identity() -%}
    {#- Partition expression that makes re-delivered copies of one event (same LSN) equal. Events without an
        LSN are told apart by their Kafka position. -#}
    _cdc_lsn,
    case when _cdc_lsn is null then _cdc_kafka_partition end,
    case when _cdc_lsn is null then _cdc_kafka_offset end
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
