{#- Column lists of a CDC model, taken from its YAML contract, so that one macro serves every table. -#}

{% macro cdc_bookkeeping_column_names() -%}
    {{ return(['_valid_from', '_valid_to', '_is_current', '_is_deleted']) }}
{%- endmacro %}


{% macro cdc_history_event_columns() -%}
    {#- What a history version keeps of the change event that made it, in contract order. -#}
    {{ return([
        '_cdc_op', '_cdc_source_ts', '_cdc_lsn', '_cdc_position', '_cdc_tx_id',
        '_cdc_kafka_partition', '_cdc_kafka_offset', '_cdc_batch_id',
    ]) }}
{%- endmacro %}


{% macro cdc_is_bookkeeping(column_name) -%}
    {{ return(column_name.startswith('_cdc_') or column_name in cdc_bookkeeping_column_names()) }}
{%- endmacro %}


{% macro cdc_contract_columns() -%}
    {#- The YAML columns (name, data_type, meta epoch_unit and cdc_arrives_later) of the model being built, in
        YAML order. A unit test cannot see its model's YAML (dbt compiles it against a manifest of the test
        alone), so unit tests of CDC models pass the columns with
        `overrides: {macros: {cdc_contract_columns: [...]}}`. -#}
    {%- set columns = [] -%}
    {%- for column in (model.columns or {}).values() -%}
        {%- set meta = column.meta or {} -%}
        {%- do columns.append({'name': column.name, 'data_type': column.data_type,
                               'epoch_unit': meta.get('epoch_unit'),
                               'arrives_later': meta.get('cdc_arrives_later', false)}) -%}
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
            {#- dtype is DuckDB's own type name (data_type would turn VARCHAR into character varying(256)) -#}
            {%- do columns.update({column.name | lower: column.dtype}) -%}
        {%- endfor -%}
    {%- endif -%}
    {{ return(columns) }}
{%- endmacro %}


{% macro cdc_typed_column(column, present) -%}
    {#- A source column cast to its contract type, named as in the contract. -#}
    {{ cdc_typed_value(adapter.quote(column.name), column, present) }} as {{ adapter.quote(column.name) }}
{%- endmacro %}


{% macro cdc_typed_value(expression, column, present) -%}
    {#- The staging value `expression` of `column` in its contract type; NULL of that type while staging has
        not seen the column yet (a column added in the source appears in staging with its first event). -#}
    {%- if present and (column.name | lower) not in present -%}
        cast(null as {{ column.data_type }})
    {%- else -%}
        {{ cdc_cast(expression, column.data_type, present.get(column.name | lower), column.get('epoch_unit')) }}
    {%- endif -%}
{%- endmacro %}


{% macro cdc_before_value(column, present) -%}
    {#- `column` of the staging row's before image (`_cdc_before`, a JSON object of the columns in their
        staging types, docs/staging-contract.md) in its contract type: read back in the staging type, then
        converted as the column itself is. Lists, structs and JSON are read as JSON, every other value from
        its text (a decimal is text there, so it stays exact). -#}
    {%- set staged = present.get(column.name | lower) or column.data_type -%}
    {%- set nested = staged | upper | trim -%}
    {#- a JSON pointer: any column name is safe in it -#}
    {%- set path = "'/" ~ column.name | replace('~', '~0') | replace('/', '~1') | replace("'", "''") ~ "'" -%}
    {%- if nested.endswith(']') or nested == 'JSON' or nested.startswith('STRUCT') or nested.startswith('MAP') -%}
        {%- set value = 'cast(json_extract(_cdc_before, ' ~ path ~ ') as ' ~ staged ~ ')' -%}
    {%- else -%}
        {%- set value = 'cast(json_extract_string(_cdc_before, ' ~ path ~ ') as ' ~ staged ~ ')' -%}
    {%- endif -%}
    {{ cdc_typed_value(value, column, present) }}
{%- endmacro %}


{% macro cdc_cast(expression, data_type, staging_type=none, epoch_unit=none) -%}
    {#- A staging value in its contract type, converted according to the type it landed with, so that one
        model works whether the connector sent schemas or not (docs/dbt.md, "Schemas on or off"):

        staging type           contract type          conversion
        integer                date                   days since 1970-01-01 (Debezium Date)
        integer                timestamp              microseconds since the epoch (MicroTimestamp); a column
                                                      with meta epoch_unit: ms (timestamp(0..3), Timestamp)
                                                      or ns (NanoTimestamp) is read in that unit
        integer                time                   microseconds since midnight (MicroTime); epoch_unit too
        varchar                blob                   base64 (bytes without a schema)
        varchar                timetz                 ISO text with Z for UTC (ZonedTime)
        varchar                decimal(p,s)           decimal text (decimal.handling.mode=string); text that is
                                                      not a decimal number (precise mode without a schema sends
                                                      base64 of the unscaled integer, its scale is only in the
                                                      schema) reads NULL
        interval               bigint                 microseconds (the lake's Parquet cannot hold intervals)
        anything else                                 cast -#}
    {%- set target = data_type | lower | trim -%}
    {%- set staged = (staging_type or '') | upper | trim -%}
    {%- set unit = (epoch_unit or 'us') | lower -%}
    {%- set from_integer = staged in ['TINYINT', 'SMALLINT', 'INTEGER', 'BIGINT', 'HUGEINT'] -%}
    {%- set micros = {'ms': '(' ~ expression ~ ') * 1000', 'us': expression,
                      'ns': '(' ~ expression ~ ') // 1000'}.get(unit, expression) -%}
    {%- if staged == 'INTERVAL' and target == 'bigint' -%}
        epoch_us({{ expression }})
    {%- elif from_integer and target == 'date' -%}
        cast(date '1970-01-01' + cast({{ expression }} as integer) as date)
    {%- elif from_integer and target in ['timestamp', 'datetime', 'timestamp without time zone'] -%}
        make_timestamp({{ micros }})
    {%- elif from_integer and target in ['time', 'time without time zone'] -%}
        cast(time '00:00:00' + to_microseconds({{ micros }}) as time)
    {%- elif staged == 'VARCHAR' and target in ['blob', 'bytea', 'varbinary', 'binary'] -%}
        from_base64({{ expression }})
    {%- elif staged == 'VARCHAR' and target in ['timetz', 'time with time zone'] -%}
        cast(regexp_replace({{ expression }}, 'Z$', '+00') as {{ data_type }})
    {%- elif staged == 'VARCHAR' and (target.startswith('decimal') or target.startswith('numeric')) -%}
        case
            when regexp_full_match({{ expression }}, '[-+]?[0-9]+(\.[0-9]*)?([eE][-+]?[0-9]+)?')
                then cast({{ expression }} as {{ data_type }})
        end
    {%- else -%}
        cast({{ expression }} as {{ data_type }})
    {%- endif -%}
{%- endmacro %}



{% macro cdc_check_contract(staging, columns, present) -%}
    {#- Fail the build when the model's contract does not describe its staging table, naming the columns:
        a staging column the contract lacks, a contract column staging has never had, a staging type the
        contract type cannot be read from (cdc_type_fits). A model opts out per column: `meta:
        {cdc_ignored_columns: [...]}` on the model for staging columns it leaves out, `meta:
        {cdc_arrives_later: true}` on a contract column the source adds later. Nothing to check before the
        staging table exists, or against a unit-test fixture. -#}
    {%- if not execute or not present -%}
        {{ return(none) }}
    {%- endif -%}
    {%- set ignored = (model.config.get('meta') or {}).get('cdc_ignored_columns', []) | map('lower') | list -%}
    {%- set declared = {} -%}
    {%- for column in columns -%}
        {%- do declared.update({column.name | lower: column}) -%}
    {%- endfor -%}
    {%- set lacking = [] -%}
    {%- for name in present -%}
        {%- if not cdc_is_staging_metadata(name) and name not in declared and name not in ignored -%}
            {%- do lacking.append(name) -%}
        {%- endif -%}
    {%- endfor -%}
    {%- set never = [] -%}
    {%- set mismatched = [] -%}
    {%- for name, column in declared.items() -%}
        {%- if name not in present -%}
            {%- if not column.arrives_later -%}
                {%- do never.append(column.name) -%}
            {%- endif -%}
        {%- elif not cdc_type_fits(present[name], column.data_type) -%}
            {%- do mismatched.append(column.name ~ ' (staging ' ~ present[name] ~ ', contract '
                                     ~ column.data_type ~ ')') -%}
        {%- endif -%}
    {%- endfor -%}
    {%- set problems = [] -%}
    {%- if lacking -%}
        {%- do problems.append('staging columns the contract lacks: ' ~ lacking | join(', ')) -%}
    {%- endif -%}
    {%- if never -%}
        {%- do problems.append('contract columns staging has never had: ' ~ never | join(', ')) -%}
    {%- endif -%}
    {%- if mismatched -%}
        {%- do problems.append('types that do not match: ' ~ mismatched | join(', ')) -%}
    {%- endif -%}
    {%- if problems -%}
        {{ exceptions.raise_compiler_error(
            "model " ~ model.name ~ " does not match " ~ staging ~ ": " ~ problems | join('; ')
            ~ ". Declare the columns in its YAML (ingest scaffold writes a new table's), or opt out: meta "
            ~ "cdc_ignored_columns on the model, cdc_arrives_later on a column (docs/dbt.md)") }}
    {%- endif -%}
{%- endmacro %}


{% macro cdc_is_staging_metadata(name) -%}
    {#- A column the ingester adds to every staging row (docs/staging-contract.md), not a source column. -#}
    {{ return(name.startswith('_cdc_') or name.startswith('_kafka_') or name in ['_batch_id', '_ingested_at']) }}
{%- endmacro %}


{% macro cdc_type_fits(staging_type, data_type) -%}
    {#- Whether cdc_cast reads a staging column of `staging_type` as `data_type`: the same kind of value, or
        one of the conversions of values landed without schemas (an epoch number as a date or time, text as
        a decimal, bytes, uuid, JSON...). Anything fits a text contract. -#}
    {%- set staged = cdc_type_family(staging_type) -%}
    {%- set declared = cdc_type_family(data_type) -%}
    {%- set fits = {
        'integer': ['integer', 'float', 'decimal', 'date', 'timestamp', 'time', 'boolean'],
        'float': ['float', 'decimal'],
        'decimal': ['decimal', 'float'],
        'text': ['text', 'decimal', 'float', 'integer', 'blob', 'uuid', 'json', 'date', 'timestamp',
                 'timestamptz', 'time', 'timetz', 'boolean', 'bit', 'list', 'interval'],
        'interval': ['interval', 'integer'],
        'json': ['json', 'list', 'struct'],
        'list': ['list', 'json'],
        'struct': ['struct', 'json'],
        'date': ['date', 'timestamp', 'timestamptz'],
        'timestamp': ['timestamp', 'timestamptz', 'date'],
        'timestamptz': ['timestamptz', 'timestamp', 'date'],
        'timetz': ['timetz', 'time'],
    } -%}
    {{ return(declared == 'text' or declared == staged or declared in fits.get(staged, [])) }}
{%- endmacro %}


{% macro cdc_type_family(data_type) -%}
    {#- The kind of value a DuckDB type name holds, for cdc_type_fits. -#}
    {%- set t = data_type | lower | trim -%}
    {%- set integers = ['tinyint', 'smallint', 'integer', 'int', 'bigint', 'hugeint', 'utinyint', 'usmallint',
                        'uinteger', 'ubigint', 'uhugeint', 'int2', 'int4', 'int8'] -%}
    {%- if t.endswith(']') -%}
        {{ return('list') }}
    {%- elif t.startswith('struct') or t.startswith('map') or t.startswith('union') -%}
        {{ return('struct') }}
    {%- elif t.startswith('decimal') or t.startswith('numeric') -%}
        {{ return('decimal') }}
    {%- elif t in integers -%}
        {{ return('integer') }}
    {%- elif t in ['float', 'real', 'double', 'float4', 'float8', 'double precision'] -%}
        {{ return('float') }}
    {%- elif t in ['varchar', 'text', 'string'] or t.startswith('varchar') or t.startswith('character')
             or t.startswith('char') or t.startswith('enum') -%}
        {{ return('text') }}
    {%- elif t in ['timestamp with time zone', 'timestamptz'] -%}
        {{ return('timestamptz') }}
    {%- elif t.startswith('timestamp') or t == 'datetime' -%}
        {{ return('timestamp') }}
    {%- elif t in ['time with time zone', 'timetz'] -%}
        {{ return('timetz') }}
    {%- elif t.startswith('time') -%}
        {{ return('time') }}
    {%- elif t in ['blob', 'bytea', 'varbinary', 'binary'] -%}
        {{ return('blob') }}
    {%- elif t in ['bool', 'boolean'] -%}
        {{ return('boolean') }}
    {%- elif t in ['bit', 'bitstring'] -%}
        {{ return('bit') }}
    {%- else -%}
        {{ return(t) }}
    {%- endif -%}
{%- endmacro %}
