-- inventory__orders equals the latest state per key recomputed in full from staging
{{ cdc_reconciliation(ref('inventory__orders'), source('staging', 'inventory__orders'), key='id') }}
