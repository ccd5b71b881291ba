{% test cdc_unique_combination(model, columns) %}
{#- The combination of `columns` is unique (the built-in `unique` test takes one column). -#}

select
    {{ columns | join(', ') }},
    count(*) as occurrences
from {{ model }}
group by all
having count(*) > 1

{% endtest %}
