-- inventory__customers equals the latest state per key recomputed in full from staging
{{ cdc_reconciliation(ref('inventory__customers'), source('staging', 'inventory__customers'), key='id') }}
