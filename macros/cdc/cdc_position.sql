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
    {#- The last batch an incremental model has applied (-1 before the first). -#}
    (select coalesce(max({{ column }}), -1) from {{ this }})
{%- endmacro %}
