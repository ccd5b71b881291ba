{#- Column lists of a CDC model, taken from its YAML contract, so that one macro serves every table. -#}

{% macro cdc_bookkeeping_column_names() -%}
    {{ return(['_valid_from', '_valid_to', '_is_current', '_is_deleted']) }}
{%- endmacro %}


{% macro cdc_is_bookkeeping(column_name) -%}
    {{ return(column_name.startswith('_cdc_') or column_name in cdc_bookkeeping_column_names()) }}
{%- endmacro %}


{% macro cdc_contract_columns() -%}
    {#- The YAML columns (name, data_type) of the model being built, in YAML order. A unit test cannot see
        its model's YAML (dbt compiles it against a manifest of the test alone), so unit tests of CDC models
        pass the columns with `overrides: {macros: {cdc_contract_columns: [...]}}`. -#}
    {%- set columns = [] -%}
    {%- for column in (model.columns or {}).values() -%}
        {%- do columns.append({'name': column.name, 'data_type': column.data_type}) -%}
    {%- endfor -%}
    {{ return(columns) }}
{%- endmacro %}


{% macro cdc_source_columns() -%}
    {#- The source (row image) columns of the contract: everything that is not CDC bookkeeping. -#}
    {%- set columns = [] -%}
    {%- for column in cdc_contract_columns() -%}
        {%- if not cdc_is_bookkeeping(column.name) -%}
            {%- do columns.append(column) -%}
        {%- endif -%}
    {%- endfor -%}
    {%- if execute and not columns -%}
        {{ exceptions.raise_compiler_error(
            "model " ~ model.name ~ " declares no source columns in its YAML: the CDC macros take the "
            ~ "column list and types from the contract (a unit test overrides cdc_contract_columns)") }}
    {%- endif -%}
    {{ return(columns) }}
{%- endmacro %}


{% macro cdc_is_fixture(relation) -%}
    {#- A unit-test fixture stands in for the relation (a CTE, nothing to inspect). -#}
    {{ return(relation.database is none or (relation.identifier or '').startswith('__dbt__cte__')) }}
{%- endmacro %}


{% macro cdc_relation_exists(relation) -%}
    {#- False only when the relation can be looked up and is not there, e.g. a staging table the ingester has
        not created yet (it creates one with the first event of its topic). -#}
    {%- if not execute or cdc_is_fixture(relation) -%}
        {{ return(true) }}
    {%- endif -%}
    {{ return(load_relation(relation) is not none) }}
{%- endmacro %}


{% macro cdc_relation_columns(relation) -%}
    {#- {lower-case column name: data type} of an existing relation; empty when it cannot be inspected (not
        built yet, or a unit-test fixture), in which case every declared column is assumed present. -#}
    {%- set columns = {} -%}
    {%- if execute and not cdc_is_fixture(relation) and cdc_relation_exists(relation) -%}
        {%- for column in adapter.get_columns_in_relation(relation) -%}
            {%- do columns.update({column.name | lower: column.data_type}) -%}
        {%- endfor -%}
    {%- endif -%}
    {{ return(columns) }}
{%- endmacro %}


{% macro cdc_typed_column(column, present) -%}
    {#- A source column cast to its contract type; NULL of that type while staging has not seen it yet
        (a column added in the source appears in staging with its first event). -#}
    {%- if present and (column.name | lower) not in present -%}
        cast(null as {{ column.data_type }}) as {{ adapter.quote(column.name) }}
    {%- else -%}
        {{ cdc_cast(adapter.quote(column.name), column.data_type, present.get(column.name | lower)) }}
            as {{ adapter.quote(column.name) }}
    {%- endif -%}
{%- endmacro %}



{% macro cdc_cast(expression, data_type, staging_type=none) -%}
    {#- A staging value in its contract type. A DuckDB INTERVAL cannot be kept in the lake's Parquet files
        (negative intervals are refused, a time part over 2^32 ms wraps, microseconds are cut), so a
        column declared bigint whose staging type is INTERVAL holds its microseconds, exactly what Debezium
        sent (MicroDuration). -#}
    {%- if (staging_type or '') | upper == 'INTERVAL' and (data_type | lower) == 'bigint' -%}
        epoch_us({{ expression }})
    {%- else -%}
        cast({{ expression }} as {{ data_type }})
    {%- endif -%}
{%- endmacro %}
