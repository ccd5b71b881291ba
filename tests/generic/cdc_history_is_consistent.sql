{% test cdc_history_is_consistent(model, key) %}
{#- The versions of each key form one unbroken timeline: each version ends where the next one starts, and
    exactly the last one is current and open (_valid_to null). -#}

with

versions as (

    select
        {{ key | join(', ') }},
        _valid_from,
        _valid_to,
        _is_current,
        lead(_valid_from) over (
            partition by {{ key | join(', ') }}
            order by {{ cdc_position_order() }}
        ) as next_valid_from,
        lead(_valid_from) over (
            partition by {{ key | join(', ') }}
            order by {{ cdc_position_order() }}
        ) is null as is_last
    from {{ model }}

)

select *
from versions
where
    _is_current != is_last
    or _valid_to is distinct from next_valid_from

{% endtest %}
