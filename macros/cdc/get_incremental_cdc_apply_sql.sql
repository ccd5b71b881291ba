{% macro get_incremental_cdc_apply_sql(arg_dict) -%}
    {#- Incremental strategy 'cdc_apply' for current-state models: the new rows replace the rows of their
        keys, and rows whose _cdc_op is 'd' or 't' (the key's latest version is a deletion) only remove them.
        Two statements in the model's transaction, since a DuckLake MERGE allows a single UPDATE or DELETE
        action. -#}
    {%- set target = arg_dict['target_relation'] -%}
    {%- set source = arg_dict['temp_relation'] -%}
    {%- set unique_key = arg_dict['unique_key'] -%}
    {%- set key = [unique_key] if unique_key is string else unique_key -%}
    {%- set dest_columns = get_quoted_csv(arg_dict['dest_columns'] | map(attribute='name')) -%}
    {%- if not key -%}
        {{ exceptions.raise_compiler_error("incremental_strategy 'cdc_apply' needs a unique_key") }}
    {%- endif -%}

    delete from {{ target }}
    where ({{ key | join(', ') }}) in (
        select {{ key | join(', ') }} from {{ source }}
    );

    insert into {{ target }} ({{ dest_columns }})
    select {{ dest_columns }}
    from {{ source }}
    where _cdc_op not in ('d', 't')
{%- endmacro %}
