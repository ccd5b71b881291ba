{{
    config(
        unique_key=['product_id', '_cdc_batch_id', '_cdc_kafka_partition', '_cdc_kafka_offset'],
        incremental_strategy='merge',
    )
}}

{{ cdc_history(source('staging', 'inventory__products_on_hand'), key='product_id') }}
