"""`ingest scaffold`: dbt model files for staging tables that have none yet.

For each staging table the ingester knows (`staging._cdc_tables`) this writes, into the dbt project:

    models/staging/<s>__<t>.yml                 source definition (topic, loaded_at_field, freshness)
    models/curated/<s>/<s>__<t>__history.sql    cdc_history (every version)
    models/curated/<s>/<s>__<t>.sql             cdc_current (one row per live key; a multiset without a key)
    models/curated/<s>/<s>__<t>.yml             both contracts, descriptions and key tests
    tests/reconciliation/reconcile_<s>__<t>.sql current state = latest per key from staging (keyed tables)

It never overwrites: a table whose history model exists anywhere under models/ is skipped, a source already
declared in some YAML file is not declared again, and an existing file is left alone. Rendering is pure
(`plan_table`); `write_plan` does the I/O.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import orjson
import yaml

from ingest.core import contract
from ingest.core.source_types import TypesFile, table_types
from ingest.core.typemap import ColumnType

# The contract type of a staging type where the two differ (DuckDB's long names, types the lake cannot keep).
_TYPE_ALIASES = {
    "timestamp with time zone": "timestamptz",
    "time with time zone": "timetz",
    "interval": "bigint",  # Parquet INTERVAL is lossy: microseconds (see docs/dbt.md)
}
_IDENTIFIER = re.compile(r"^[a-z_][a-z0-9_]*$")

# Bookkeeping columns of the two models: (name, type, doc block, not null, accepted values).
_CURRENT_BOOKKEEPING = [
    ("_cdc_source_ts", "timestamptz", "cdc_source_ts", True, None),
    ("_cdc_lsn", "bigint", "cdc_lsn", False, None),
    ("_cdc_updated_at", "timestamptz", "cdc_updated_at", True, None),
    ("_cdc_op", "varchar", "cdc_op", True, ["r", "c", "u"]),
    ("_cdc_kafka_partition", "integer", "cdc_kafka_partition", True, None),
    ("_cdc_kafka_offset", "bigint", "cdc_kafka_offset", True, None),
    ("_cdc_batch_id", "bigint", "cdc_batch_id", True, None),
]
# A table without a key: rows are copies of row images, and the latest version of an image may remove one.
_MULTISET_BOOKKEEPING = [
    ("_cdc_row_hash", "varchar", "cdc_row_hash", True, None),
    ("_cdc_row_number", "bigint", "cdc_row_number", True, None),
    *[
        (n, t, d, nn, ["r", "c", "u", "d"] if n == "_cdc_op" else a)
        for n, t, d, nn, a in _CURRENT_BOOKKEEPING
    ],
]
_HISTORY_BOOKKEEPING = [
    ("_valid_from", "timestamptz", "cdc_valid_from", True, None),
    ("_valid_to", "timestamptz", "cdc_valid_to", False, None),
    ("_is_current", "boolean", "cdc_is_current", True, None),
    ("_is_deleted", "boolean", "cdc_is_deleted", True, None),
    ("_cdc_op", "varchar", "cdc_op", True, ["r", "c", "u", "d", "t"]),
    ("_cdc_source_ts", "timestamptz", "cdc_source_ts", True, None),
    ("_cdc_lsn", "bigint", "cdc_lsn", False, None),
    ("_cdc_position", "bigint[]", "cdc_position", False, None),
    ("_cdc_tx_id", "varchar", "cdc_tx_id", False, None),
    ("_cdc_kafka_partition", "integer", "cdc_kafka_partition", True, None),
    ("_cdc_kafka_offset", "bigint", "cdc_kafka_offset", True, None),
    ("_cdc_batch_id", "bigint", "cdc_batch_id", True, None),
    ("_cdc_updated_at", "timestamptz", "cdc_updated_at", True, None),
]
# What tells apart the versions of one key in a history model (its MERGE key after the key): the Kafka
# position alone repeats when the broker or topic is replaced, the batch id does not.
VERSION_POSITION = ("_cdc_batch_id", "_cdc_kafka_partition", "_cdc_kafka_offset")

# Documented in every staging source as the contract defines them.
_STAGING_METADATA = [(column.name, column.meaning) for column in contract.STAGING_METADATA]


# The unit of the epoch number a declared temporal column arrives as without a schema (`meta.epoch_unit`;
# microseconds need none).
_EPOCH_UNITS = {
    "io.debezium.time.Timestamp": "ms",
    "io.debezium.time.NanoTimestamp": "ns",
    "io.debezium.time.Time": "ms",
    "io.debezium.time.NanoTime": "ns",
}
_INTEGER_TYPES = {"tinyint", "smallint", "integer", "bigint", "hugeint"}


@dataclass(frozen=True)
class SourceColumn:
    """A column as the types file (`profiles/types/`) declares it."""

    name: str
    source_type: str  # the source's own type name, e.g. numeric(12,2)
    not_null: bool
    enum: tuple[str, ...] | None
    landed: ColumnType | None  # how the ingester types it without a schema; None: a type it does not know


def declared_columns(
    files: Iterable[TypesFile],
) -> dict[tuple[str | None, str, str], tuple[SourceColumn, ...]]:
    """Per (server or None, source schema, table) of the types files, its columns in the source's order."""
    declared = {}
    for types in files:
        for name, table in types.tables.items():
            landed = table_types(types.schema_name, name, table, types.connector).columns
            declared[(types.server, types.schema_name, name)] = tuple(
                SourceColumn(
                    column, d.type, d.not_null, tuple(d.enum) if d.enum else None, landed.get(column)
                )
                for column, d in table.columns.items()
            )
    return declared


@dataclass(frozen=True)
class StagingTable:
    """One row of `staging._cdc_tables`."""

    table_name: str  # <schema>__<table>
    topic: str
    source_schema: str
    source_table: str
    primary_key: tuple[str, ...]
    columns: tuple[dict[str, Any], ...]  # {name, type, source_type, optional}
    schema_mode: str  # connect | declared | inferred
    declared: tuple[SourceColumn, ...] | None = None  # the types file's columns, when it lists the table

    @classmethod
    def from_row(cls, row: tuple) -> StagingTable:
        name, topic, schema, table, key, columns, mode = row
        parsed = orjson.loads(columns) if isinstance(columns, str | bytes) else columns
        # the event's source block may lack them: the topic <server>.<schema>.<table> has them
        parts = topic.split(".")
        return cls(
            name,
            topic,
            schema or "__".join(parts[1:-1]) or parts[0],
            table or parts[-1],
            tuple(key or ()),
            tuple(parsed or ()),
            mode or "connect",
        )

    @property
    def source_name(self) -> str:
        return f"{self.source_schema}.{self.source_table}"


@dataclass
class PlannedFile:
    path: Path  # relative to the dbt project
    content: str


@dataclass
class TablePlan:
    table: StagingTable
    files: list[PlannedFile] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)


# ----------------------------------------------------------------------------------------------- rendering


def contract_type(staging_type: str) -> str:
    lowered = staging_type.strip().lower()
    return _TYPE_ALIASES.get(lowered, lowered)


def _column_description(table: StagingTable, column: dict[str, Any]) -> str:
    source_type = column.get("source_type") or column.get("type")
    role = " (primary key)" if column["name"] in table.primary_key else ""
    return f"Source column {table.source_name}.{column['name']}{role}; Debezium type {source_type}."


def _bookkeeping_entries(spec: list[tuple]) -> list[dict[str, Any]]:
    entries = []
    for name, data_type, doc, not_null, accepted in spec:
        entry: dict[str, Any] = {
            "name": name,
            "description": "{{ doc('" + doc + "') }}",
            "data_type": data_type,
        }
        if not_null:
            entry["constraints"] = [{"type": "not_null"}]
        if accepted:
            entry["data_tests"] = [{"accepted_values": {"arguments": {"values": accepted}}}]
        entries.append(entry)
    return entries


def _source_entries(table: StagingTable, *, current: bool) -> list[dict[str, Any]]:
    """The source columns of a contract: the types file's (its types, in the source's order) where it lists
    the table, then the staging table's others (all of them without a file), typed as staging is."""
    declared = {c.name: c for c in table.declared or ()}
    staged = {c["name"]: c for c in table.columns}
    entries = []
    for name in [*declared, *(n for n in staged if n not in declared)]:
        entry: dict[str, Any] = {"name": name}
        source = declared.get(name)
        staging_type = staged[name]["type"] if name in staged else None
        if source is not None and source.landed is not None:
            entry["data_type"] = contract_type(source.landed.duckdb_type)
            entry["description"] = _declared_description(table, source)
            meta: dict[str, Any] = {}
            unit = _EPOCH_UNITS.get(source.landed.source_type)
            if unit and staging_type is not None and staging_type.lower() in _INTEGER_TYPES:
                meta["epoch_unit"] = unit  # landed inferred: the epoch number as sent
            if staging_type is None:
                meta["cdc_arrives_later"] = True  # in the source, no event has brought it yet
            if meta:
                entry["meta"] = meta
        else:
            entry["data_type"] = contract_type(staging_type or "varchar")
            entry["description"] = _column_description(table, staged.get(name, {"name": name}))
        tests: list[Any] = []
        if name in table.primary_key:
            entry["constraints"] = [{"type": "not_null"}]
            if current and len(table.primary_key) == 1:
                tests.append("unique")
        if current and source is not None and source.enum:
            # a label added to the type later warns until the file is pulled again
            values = list(source.enum)
            tests.append(
                {"accepted_values": {"arguments": {"values": values}, "config": {"severity": "warn"}}}
            )
        if tests:
            entry["data_tests"] = tests
        entries.append(entry)
    return entries


def _declared_description(table: StagingTable, column: SourceColumn) -> str:
    role = " (primary key)" if column.name in table.primary_key else ""
    not_null = ", not null" if column.not_null else ""
    return (
        f"Source column {table.source_name}.{column.name}{role}; source type {column.source_type}{not_null}."
    )


class _IndentedDumper(yaml.SafeDumper):
    """Lists indented under their key, as in the hand-written YAML of this project."""

    def increase_indent(self, flow: bool = False, indentless: bool = False) -> None:
        super().increase_indent(flow, False)


def _dump(document: dict[str, Any]) -> str:
    return yaml.dump(document, Dumper=_IndentedDumper, sort_keys=False, width=120, allow_unicode=True)


def render_models_yaml(table: StagingTable) -> str:
    """Both models' contracts: source columns with types and descriptions, then the bookkeeping columns."""
    key = list(table.primary_key)
    history_key = key or ["_cdc_row_hash"]
    history_columns = _source_entries(table, current=False)
    if not key:
        history_columns.append(
            {
                "name": "_cdc_row_hash",
                "description": "{{ doc('cdc_row_hash') }}",
                "data_type": "varchar",
                "constraints": [{"type": "not_null"}],
            }
        )
    if key:
        current: dict[str, Any] = {
            "name": table.table_name,
            "description": f"Current state of {table.source_name}: one row per live primary key "
            f"({', '.join(key)}), the source columns as of its latest change.",
            "config": {"contract": {"enforced": True}},
        }
        if len(key) > 1:
            current["data_tests"] = [{"cdc_unique_combination": {"arguments": {"columns": key}}}]
        current["columns"] = _source_entries(table, current=True) + _bookkeeping_entries(_CURRENT_BOOKKEEPING)
    else:
        current = {
            "name": table.table_name,
            "description": f"Current state of {table.source_name}, a table without a primary key: every row "
            "that exists, as a multiset (exact duplicates are several rows, numbered by _cdc_row_number); "
            "docs/dbt.md.",
            "config": {"contract": {"enforced": True}},
            "data_tests": [
                {"cdc_unique_combination": {"arguments": {"columns": ["_cdc_row_hash", "_cdc_row_number"]}}}
            ],
            "columns": _source_entries(table, current=True) + _bookkeeping_entries(_MULTISET_BOOKKEEPING),
        }
    models = [current]
    history_description = (
        f"Every version of every {table.source_name} row (SCD type 2), bounded by source commit time."
    )
    if not key:
        history_description += (
            " The table has no primary key, so a row is identified by its whole image (_cdc_row_hash): every "
            "event is a version of the image it adds or removes (docs/dbt.md)."
        )
    models.append(
        {
            "name": f"{table.table_name}__history",
            "description": history_description,
            "config": {"contract": {"enforced": True}},
            "data_tests": [
                {"cdc_unique_combination": {"arguments": {"columns": [*history_key, *VERSION_POSITION]}}},
                {"cdc_history_is_consistent": {"arguments": {"key": history_key}}},
            ],
            "columns": history_columns + _bookkeeping_entries(_HISTORY_BOOKKEEPING),
        }
    )
    return _dump({"version": 2, "models": models})


def render_source_yaml(table: StagingTable) -> str:
    """The staging table as a dbt source: its Kafka topic (lineage in dbt docs), freshness on _ingested_at."""
    key = ", ".join(table.primary_key) if table.primary_key else "no primary key"
    columns = [
        {
            "name": c["name"],
            "description": f"Source column {table.source_name}.{c['name']} (after image; before image "
            "for a delete).",
        }
        for c in table.columns
    ]
    columns += [{"name": name, "description": description} for name, description in _STAGING_METADATA]
    source = {
        "name": "staging",
        "database": "lake",
        "schema": "staging",
        "tables": [
            {
                "name": table.table_name,
                "description": f"Change events of {table.source_name}, landed from Kafka topic "
                f"`{table.topic}` ({key}).",
                "meta": {
                    "kafka_topic": table.topic,
                    "source_table": table.source_name,
                    "primary_key": list(table.primary_key),
                },
                "config": {
                    "loaded_at_field": "_ingested_at",
                    "freshness": {
                        "warn_after": {"count": 1, "period": "hour"},
                        "error_after": {"count": 24, "period": "hour"},
                    },
                },
                "columns": columns,
            }
        ],
    }
    return _dump({"version": 2, "sources": [source]})


def _sql_list(names: Iterable[str]) -> str:
    return "[" + ", ".join(f"'{n}'" for n in names) + "]"


def render_history_sql(table: StagingTable) -> str:
    key = list(table.primary_key)
    unique = _sql_list([*(key or ["_cdc_row_hash"]), *VERSION_POSITION])
    key_argument = "none" if not key else (f"'{key[0]}'" if len(key) == 1 else _sql_list(key))
    return (
        # one line would pass sqlfluff's 120 characters with a long key
        f"{{{{\n    config(\n        unique_key={unique},\n"
        "        incremental_strategy='merge',\n    )\n}}\n\n"
        f"{{{{ cdc_history(source('staging', '{table.table_name}'), key={key_argument}) }}}}\n"
    )


def render_current_sql(table: StagingTable) -> str:
    key = list(table.primary_key)
    if not key:
        return (
            "{{ config(unique_key='_cdc_row_hash', incremental_strategy='cdc_apply_multiset') }}\n\n"
            f"{{{{ cdc_multiset_current(ref('{table.table_name}__history')) }}}}\n"
        )
    unique = f"'{key[0]}'" if len(key) == 1 else _sql_list(key)
    return (
        f"{{{{ config(unique_key={unique}, incremental_strategy='cdc_apply') }}}}\n\n"
        f"{{{{ cdc_current(ref('{table.table_name}__history')) }}}}\n"
    )


def render_reconciliation_sql(table: StagingTable) -> str:
    key = list(table.primary_key)
    key_argument = f"'{key[0]}'" if len(key) == 1 else _sql_list(key)
    return (
        f"-- current state of {table.source_name} = latest version per key, recomputed in full from staging\n"
        "{{\n"
        "    cdc_reconciliation(\n"
        f"        ref('{table.table_name}'),\n"
        f"        source('staging', '{table.table_name}'),\n"
        f"        key={key_argument},\n"
        "    )\n"
        "}}\n"
    )


def plan_table(table: StagingTable, *, declare_source: bool) -> TablePlan:
    """Every file of one table, rendered; nothing is read or written here."""
    plan = TablePlan(table)
    name = table.table_name
    folder = Path("models") / "curated" / table.source_schema
    if declare_source:
        plan.files.append(PlannedFile(Path("models") / "staging" / f"{name}.yml", render_source_yaml(table)))
    plan.files.append(PlannedFile(folder / f"{name}__history.sql", render_history_sql(table)))
    plan.files.append(PlannedFile(folder / f"{name}.sql", render_current_sql(table)))
    if table.primary_key:
        plan.files.append(
            PlannedFile(
                Path("tests") / "reconciliation" / f"reconcile_{name}.sql", render_reconciliation_sql(table)
            )
        )
    else:
        plan.notes.append(
            f"{table.source_name} has no primary key: its current state is a multiset of whole rows (exact "
            "duplicates kept), counted from the history; updates and deletes need REPLICA IDENTITY FULL; "
            "see docs/dbt.md"
        )
    plan.files.append(PlannedFile(folder / f"{name}.yml", render_models_yaml(table)))
    if table.declared is not None:
        untyped = sorted({c["name"] for c in table.columns} - {c.name for c in table.declared if c.landed})
        plan.notes.append(
            f"{table.source_name}: contract types from the types file"
            + (f"; not typed by it (staging's types): {', '.join(untyped)}" if untyped else "")
        )
    elif table.schema_mode == "inferred":
        plan.notes.append(
            f"{table.source_name} landed without Kafka Connect schemas: its column types were inferred from "
            "values (dates arrive as epoch days, timestamps as epoch microseconds, precise decimals as "
            "base64). Review each data_type in the YAML (e.g. bigint -> date, varchar -> decimal(p,s); "
            "meta: {epoch_unit: ms} for timestamp(0..3)); the curated macros convert to the declared type. "
            "Or pull the source's types (`ingest types pull`), replay the table, and scaffold again"
        )
    unusual = [c["name"] for c in table.columns if not _IDENTIFIER.match(c["name"])]
    if unusual:
        plan.notes.append(f"column names that need quoting in hand-written SQL: {', '.join(unusual)}")
    return plan


# ------------------------------------------------------------------------------------------------------ I/O


def declared_sources(project_dir: Path) -> set[str]:
    """Names of the tables of source `staging` declared in any YAML file under models/."""
    names: set[str] = set()
    for path in sorted((project_dir / "models").rglob("*.yml")):
        document = yaml.safe_load(path.read_text()) or {}
        for source in document.get("sources") or []:
            if source.get("name") == "staging":
                names.update(t["name"] for t in source.get("tables") or [])
    return names


def has_models(project_dir: Path, table_name: str) -> bool:
    return any((project_dir / "models").rglob(f"{table_name}__history.sql")) or any(
        (project_dir / "models").rglob(f"{table_name}.sql")
    )


def read_staging_tables(con: Any, only: str | None = None) -> list[StagingTable]:
    """The staging tables the ingester knows (`staging._cdc_tables`); `only`: one, SCHEMA.TABLE."""
    rows = con.execute(
        "select table_name, topic, source_schema, source_table, primary_key, columns, schema_mode "
        "from lake.staging._cdc_tables order by table_name"
    ).fetchall()
    tables = [StagingTable.from_row(row) for row in rows]
    if only is not None:
        tables = [t for t in tables if t.source_name == only or t.table_name == only]
    return tables


@dataclass(frozen=True)
class Skipped:
    """A staging table that has models already; `mismatch` says how their contract differs from it."""

    table_name: str
    mismatch: str | None = None


def contract_of(project_dir: Path, model_name: str) -> tuple[Path, dict[str, str]] | None:
    """The YAML file declaring `model_name` and its contract's source columns (name -> data type)."""
    for path in sorted((project_dir / "models").rglob("*.yml")):
        document = yaml.safe_load(path.read_text()) or {}
        for model in document.get("models") or []:
            if model.get("name") == model_name:
                columns = {
                    str(c["name"]): str(c.get("data_type", ""))
                    for c in model.get("columns") or []
                    if not str(c["name"]).startswith("_")
                }
                return path.relative_to(project_dir), columns
    return None


def contract_mismatch(project_dir: Path, table: StagingTable) -> str | None:
    """How the contract of the history model that claims `table` differs from its columns, or None."""
    found = contract_of(project_dir, f"{table.table_name}__history")
    if found is None:
        return None
    path, contract_columns = found
    staged = {c["name"] for c in table.columns}
    lacking = sorted(staged - set(contract_columns))
    never = sorted(set(contract_columns) - staged)
    if not lacking and not never:
        return None
    parts = [f"lacks staging's {', '.join(lacking)}"] if lacking else []
    parts += [f"has {', '.join(never)}, which staging has never had"] if never else []
    return (
        f"staging.{table.table_name} is claimed by model {table.table_name}__history ({path}), whose "
        f"contract {' and '.join(parts)}: its build fails until they agree (a model of another table "
        "with this name? then name the staging tables apart, docs/staging-contract.md)"
    )


def plan_project(
    project_dir: Path,
    tables: Iterable[StagingTable],
    types_files: Iterable[TypesFile] = (),
) -> tuple[list[TablePlan], list[Skipped]]:
    """Plans for the tables without models (contracts from the types files where they list the table), and
    those skipped because they have some (with how those models' contract differs from the table)."""
    sources = declared_sources(project_dir)
    declared = declared_columns(types_files)
    plans: list[TablePlan] = []
    skipped: list[Skipped] = []
    for table in tables:
        if has_models(project_dir, table.table_name):
            skipped.append(Skipped(table.table_name, contract_mismatch(project_dir, table)))
            continue
        server = table.topic.split(".", 1)[0]
        own = declared.get((server, table.source_schema, table.source_table))
        table = replace(table, declared=own or declared.get((None, table.source_schema, table.source_table)))
        plans.append(plan_table(table, declare_source=table.table_name not in sources))
    return plans, skipped


def write_plan(project_dir: Path, plan: TablePlan) -> list[Path]:
    """Write the plan's files that do not exist yet; return those written."""
    written = []
    for planned in plan.files:
        target = project_dir / planned.path
        if target.exists():
            continue
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(planned.content)
        written.append(planned.path)
    return written
