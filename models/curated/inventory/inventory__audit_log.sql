{{ config(unique_key='_cdc_row_hash', incremental_strategy='cdc_apply_multiset') }}

{{ cdc_multiset_current(ref('inventory__audit_log__history')) }}
