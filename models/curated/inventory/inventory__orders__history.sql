{{
    config(
        unique_key=['id', '_cdc_batch_id', '_cdc_kafka_partition', '_cdc_kafka_offset'],
        incremental_strategy='merge',
    )
}}

{{ cdc_history(source('staging', 'inventory__orders'), key='id') }}
