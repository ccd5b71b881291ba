{{ config(unique_key='id', incremental_strategy='cdc_apply') }}

{{ cdc_current(ref('inventory__orders__history')) }}
