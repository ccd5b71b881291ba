"""Curated current-state tables against a real PostgreSQL, cell by cell.

One comparison serves the demo (`ingest demo-postgres` prints it) and the tests (the corpus's final state,
a live Debezium source):

    pg = postgres_tables(dsn, "inventory", con)                  # {table: PgTable(key, columns, rows)}
    differences = compare_curated(lake_query, pg, exceptions)    # [] when curated equals PostgreSQL
    tables = compare_tables(lake_query, pg, exceptions)          # the same, per table (counts, keys)

PostgreSQL is read through DuckDB's postgres extension (already installed offline for the lake), so values
arrive as the same Python types the lake gives. A few PostgreSQL types are converted on the PostgreSQL side
to what the stream carries and the curated contracts declare (see `_pg_expression`). Rows are matched by
primary key; where the stream does not carry a value, an `Exception_` names the cell and why.
"""

from __future__ import annotations

import json
import math
from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime, time, timedelta
from typing import Any

import duckdb

LakeQuery = Callable[[str], list[tuple]]


@dataclass(frozen=True)
class PgTable:
    name: str
    key: tuple[str, ...]  # primary-key columns, empty for a table without one
    columns: dict[str, str]  # column name -> PostgreSQL type (format_type), in table order
    rows: list[dict[str, Any]]


@dataclass(frozen=True)
class Exception_:
    """A cell the stream does not carry, so curated may differ from PostgreSQL there.

    table/column name it; `keys` limits it to some primary keys (None: every row); `reason` says why."""

    table: str
    column: str | None  # None: the whole table is not compared
    reason: str
    keys: frozenset[tuple] | None = None
    matched: list[str] = field(default_factory=list, compare=False)

    def covers(self, table: str, column: str | None, key: tuple | None) -> bool:
        return (
            self.table == table
            and (self.column is None or self.column == column)
            and (self.keys is None or key in self.keys)
        )


@dataclass(frozen=True)
class TableDifference:
    """One table's comparison: `messages` lists every difference no exception covers."""

    table: str
    columns: tuple[str, ...]
    postgres_rows: int
    curated_rows: int
    missing: list[tuple]  # primary keys in PostgreSQL, not in curated
    unexpected: list[tuple]  # primary keys in curated, not in PostgreSQL
    messages: list[str]

    @property
    def equal(self) -> bool:
        return not self.messages


# ------------------------------------------------------------------------------- reading PostgreSQL


def _pg_expression(column: str, pg_type: str) -> str:
    """The PostgreSQL expression that reads `column` as the stream carries it.

    - interval: Debezium's MicroDuration, microseconds counting a month as 30.4375 days (the curated
      contract keeps it as bigint, see docs/dbt.md); PostgreSQL's own epoch counts a month as 30 days.
    - numeric without a scale: its exact text (curated keeps VariableScaleDecimal as varchar).
    - money: numeric(38, 2); char(n): its padded text, as Debezium sends it; enums and other user-defined
      types: text.
    """
    quoted = '"' + column.replace('"', '""') + '"'
    if pg_type == "interval":
        months = f"(extract(year from {quoted}) * 12 + extract(month from {quoted}))"
        days = f"extract(day from {quoted})"
        seconds = (
            f"(extract(epoch from {quoted}) - (extract(year from {quoted}) * 365.25"
            f" + extract(month from {quoted}) * 30 + {days}) * 86400)"
        )
        return f"round(({months} * 30.4375 + {days}) * 86400000000 + {seconds} * 1000000)::bigint"
    if pg_type == "numeric":
        return f"{quoted}::text"
    if pg_type == "money":
        return f"{quoted}::numeric(38, 2)"
    if pg_type.startswith("character(") or pg_type == "character":
        # format() keeps the blank padding that a cast to text strips (and turns NULL into '')
        return f"case when {quoted} is not null then format('%s', {quoted}) end"
    return quoted


def _duckdb(con: duckdb.DuckDBPyConnection | None) -> duckdb.DuckDBPyConnection:
    if con is not None:
        return con
    from ingest.core.config import load_settings
    from ingest.core.lake import connection_config, install_extensions

    settings = load_settings("dev")
    install_extensions(settings.extension_dir)
    return duckdb.connect(config=connection_config(settings))


def postgres_tables(
    dsn: str, schema: str, con: duckdb.DuckDBPyConnection | None = None
) -> dict[str, PgTable]:
    """Every base table of `schema` in the PostgreSQL at `dsn`: its primary key, columns and rows.

    `con` is any DuckDB connection that can load the postgres extension (e.g. the lake's); a new in-memory
    one is made otherwise. User-defined types (enums) are read as text."""
    own = con is None
    con = _duckdb(con)
    alias = "compare_source"
    try:
        con.execute(f"attach '{dsn}' as {alias} (type postgres, read_only)")
        try:
            return _read_tables(con, alias, schema)
        finally:
            con.execute(f"detach {alias}")
    finally:
        if own:
            con.close()


def _pg_query(con: duckdb.DuckDBPyConnection, alias: str, sql: str) -> list[tuple]:
    return con.execute("select * from postgres_query(?, ?)", [alias, sql]).fetchall()


def _read_tables(con: duckdb.DuckDBPyConnection, alias: str, schema: str) -> dict[str, PgTable]:
    literal = "'" + schema.replace("'", "''") + "'"
    columns_sql = f"""
        select c.relname, a.attname, format_type(a.atttypid, a.atttypmod),
               t.typtype = 'e' or t.typtype = 'd' as user_defined
        from pg_attribute a
        join pg_class c on c.oid = a.attrelid
        join pg_namespace n on n.oid = c.relnamespace
        join pg_type t on t.oid = a.atttypid
        where n.nspname = {literal} and c.relkind = 'r' and a.attnum > 0 and not a.attisdropped
        order by c.relname, a.attnum
    """
    keys_sql = f"""
        select c.relname, string_agg(a.attname, ',' order by array_position(i.indkey, a.attnum))
        from pg_index i
        join pg_class c on c.oid = i.indrelid
        join pg_namespace n on n.oid = c.relnamespace
        join pg_attribute a on a.attrelid = c.oid and a.attnum = any(i.indkey)
        where n.nspname = {literal} and i.indisprimary
        group by c.relname
    """
    tables: dict[str, dict[str, str]] = {}
    for table, column, pg_type, user_defined in _pg_query(con, alias, columns_sql):
        tables.setdefault(table, {})[column] = "text" if user_defined else pg_type
    keys = {table: tuple(columns.split(",")) for table, columns in _pg_query(con, alias, keys_sql)}
    result = {}
    for table, columns in tables.items():
        select = ", ".join(
            f'{_pg_expression(c, t)} as "{c}"' if t != "text" else f'"{c}"::text as "{c}"'
            for c, t in columns.items()
        )
        sql = f'select {select} from "{schema}"."{table}"'
        rows = [dict(zip(columns, row, strict=True)) for row in _pg_query(con, alias, sql)]
        result[table] = PgTable(table, keys.get(table, ()), columns, rows)
    return result


# ------------------------------------------------------------------------------------------ comparing


def _utc_time(value: time) -> time:
    """A time with time zone as UTC wall-clock time (Debezium normalizes timetz to UTC, wrapping midnight)."""
    offset = value.utcoffset() or timedelta(0)
    moment = datetime.combine(datetime(2000, 1, 1), value.replace(tzinfo=None)) - offset
    return moment.time().replace(tzinfo=UTC)


def normalize(value: Any) -> Any:
    """One comparable form for values of either side: JSON text as parsed JSON, aware times in UTC, NaN as a
    marker (NaN != NaN), aware datetimes in UTC."""
    if isinstance(value, float) and math.isnan(value):
        return "NaN"
    if isinstance(value, time) and value.tzinfo is not None:
        return _utc_time(value)
    if isinstance(value, datetime) and value.tzinfo is not None:
        return value.astimezone(UTC)
    if isinstance(value, list):
        return [normalize(v) for v in value]
    if isinstance(value, str) and value[:1] in ("{", "["):
        try:
            return json.loads(value)
        except ValueError:
            return value
    return value


def equal(pg_value: Any, curated_value: Any) -> bool:
    a, b = normalize(pg_value), normalize(curated_value)
    if isinstance(a, float) and isinstance(b, float):
        return a == b or math.isclose(a, b, rel_tol=1e-6)  # a REAL arrives as float32 in one of them
    return a == b


def compare_tables(
    lake_query: LakeQuery,
    pg: dict[str, PgTable],
    exceptions: Iterable[Exception_] = (),
    source_schema: str = "inventory",
    curated: str = "lake.curated",
) -> list[TableDifference]:
    """Each PostgreSQL table against its curated current-state model (`<curated>.<source_schema>__<table>`),
    rows matched by primary key, cell by cell (a table without a primary key as a multiset of whole rows). A
    cell (or table) covered by an exception is not a difference; the exception records that it was needed
    (`matched`). A table wholly excepted is left out."""
    exceptions = list(exceptions)

    def excepted(table: str, column: str | None, key: tuple | None, message: str) -> bool:
        for exception in exceptions:
            if exception.covers(table, column, key):
                exception.matched.append(message)
                return True
        return False

    results: list[TableDifference] = []
    for name, table in sorted(pg.items()):
        if excepted(name, None, None, f"{name}: not compared"):
            continue
        columns = list(table.columns)
        select = ", ".join(f'"{c}"' for c in columns)
        curated_rows = lake_query(f"select {select} from {curated}.{source_schema}__{name}")
        if not table.key:
            results.append(_compare_multisets(table, curated_rows, excepted))
            continue
        messages: list[str] = []
        by_key_curated: dict[tuple, dict[str, Any]] = {}
        for row in curated_rows:
            record = dict(zip(columns, row, strict=True))
            key = tuple(record[k] for k in table.key)
            if key in by_key_curated:
                messages.append(f"{name} {key}: more than one row in curated")
            by_key_curated[key] = record
        by_key_pg = {tuple(r[k] for k in table.key): r for r in table.rows}
        missing, unexpected = [], []
        for key in sorted(by_key_pg.keys() - by_key_curated.keys(), key=repr):
            message = f"{name} {key}: in PostgreSQL, missing from curated"
            if not excepted(name, None, key, message):
                missing.append(key)
                messages.append(message)
        for key in sorted(by_key_curated.keys() - by_key_pg.keys(), key=repr):
            message = f"{name} {key}: in curated, not in PostgreSQL"
            if not excepted(name, None, key, message):
                unexpected.append(key)
                messages.append(message)
        for key in sorted(by_key_pg.keys() & by_key_curated.keys(), key=repr):
            for column in columns:
                expected, actual = by_key_pg[key][column], by_key_curated[key][column]
                if equal(expected, actual):
                    continue
                message = f"{name} {key} {column}: PostgreSQL {expected!r}, curated {actual!r}"
                if not excepted(name, column, key, message):
                    messages.append(message)
        results.append(
            TableDifference(
                name, tuple(columns), len(table.rows), len(curated_rows), missing, unexpected, messages
            )
        )
    return results


def _comparable(value: Any) -> Any:
    """A hashable form of a normalized value: lists as tuples, JSON objects as sorted text, floats to the
    precision `equal` allows."""
    value = normalize(value)
    if isinstance(value, list):
        return tuple(_comparable(v) for v in value)
    if isinstance(value, dict):
        return json.dumps(value, sort_keys=True)
    if isinstance(value, float):
        return float(f"{value:.6g}")
    return value


def _compare_multisets(
    table: PgTable, curated_rows: list[tuple], excepted: Callable[[str, str | None, tuple | None, str], bool]
) -> TableDifference:
    """A table without a primary key against its curated current state: equal as multisets of whole rows
    (exact duplicates count)."""
    columns = list(table.columns)
    in_pg = Counter(tuple(_comparable(r[c]) for c in columns) for r in table.rows)
    in_curated = Counter(tuple(_comparable(v) for v in row) for row in curated_rows)
    missing, unexpected, messages = [], [], []
    for row, count in sorted((in_pg - in_curated).items(), key=repr):
        message = f"{table.name} {row}: {count} more in PostgreSQL than in curated"
        if not excepted(table.name, None, row, message):
            missing.append(row)
            messages.append(message)
    for row, count in sorted((in_curated - in_pg).items(), key=repr):
        message = f"{table.name} {row}: {count} more in curated than in PostgreSQL"
        if not excepted(table.name, None, row, message):
            unexpected.append(row)
            messages.append(message)
    return TableDifference(
        table.name, tuple(columns), len(table.rows), len(curated_rows), missing, unexpected, messages
    )


def compare_curated(
    lake_query: LakeQuery,
    pg: dict[str, PgTable],
    exceptions: Iterable[Exception_] = (),
    source_schema: str = "inventory",
    curated: str = "lake.curated",
) -> list[str]:
    """Every difference `compare_tables` finds, as one list ([] when curated equals PostgreSQL)."""
    tables = compare_tables(lake_query, pg, exceptions, source_schema, curated)
    return [message for table in tables for message in table.messages]
