-- inventory__products equals the latest state per key recomputed in full from staging
{{ cdc_reconciliation(ref('inventory__products'), source('staging', 'inventory__products'), key='id') }}
