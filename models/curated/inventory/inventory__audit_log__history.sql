{{
    config(
        unique_key=['_cdc_row_hash', '_cdc_batch_id', '_cdc_kafka_partition', '_cdc_kafka_offset'],
        incremental_strategy='merge',
    )
}}

{{ cdc_history(source('staging', 'inventory__audit_log'), key=none) }}
