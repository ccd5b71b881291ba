"""Which staging table a Kafka topic lands in: pure, no I/O.

A Debezium data topic is `<server>.<schema>.<table>` (the connector's topic prefix, then the source's
schema or database, then the table; SQL Server's has `<database>.<schema>` in the middle). The default name
`<schema>__<table>` leaves the server out; sources that share schema and table names (two databases, shards)
need `{server}__{schema}__{table}`: the ingester refuses to start while two topics it matches would share a
table (`colliding_topics` in decode.py), and the sink keeps rows of another source table out of a table
another topic holds (`sink.other_source`).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field

DEFAULT_TABLE_TEMPLATE = "{schema}__{table}"
_TEMPLATE_FIELDS = re.compile(r"\{(\w*)\}")


@dataclass(frozen=True)
class TableNaming:
    """Which staging table a data topic `<server>.<schema>.<table>` lands in: `explicit` names it per topic,
    else `template` with {server} (the topic prefix), {schema} (every middle part, joined by `__`: SQL
    Server's `<database>.<schema>`) and {table}. The default keeps the server out, so two sources with one
    schema and table name need the template `{server}__{schema}__{table}`."""

    template: str = DEFAULT_TABLE_TEMPLATE
    explicit: Mapping[str, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        used = set(_TEMPLATE_FIELDS.findall(self.template))
        if not used <= {"server", "schema", "table"} or "table" not in used:
            raise ValueError(
                f"staging_table {self.template!r}: a template of {{server}}, {{schema}} and {{table}}, with "
                "{table} at least"
            )
        for name in [self.template, *self.explicit.values()]:
            if not name or name.startswith("_"):
                raise ValueError(f"staging table name {name!r}: names starting with _ are the ingester's own")

    def table_of(self, topic: str) -> str:
        named = self.explicit.get(topic)
        if named is not None:
            return named
        parts = topic.split(".")
        schema = "__".join(parts[1:-1])
        template = self.template
        if not schema:  # `<server>.<table>`: no schema to name
            template = template.replace("{schema}__", "").replace("__{schema}", "").replace("{schema}", "")
        return template.format(server=parts[0], schema=schema, table=parts[-1])
