-- inventory__addresses equals the latest state per key recomputed in full from staging
{{ cdc_reconciliation(ref('inventory__addresses'), source('staging', 'inventory__addresses'), key='id') }}
