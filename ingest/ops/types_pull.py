"""`ingest types pull`: the column types of a source database, written as types files (core/source_types.py).

Read-only: one query of PostgreSQL's catalog (`pg_attribute`, `pg_type`, `pg_enum`, `pg_index`) through
DuckDB's postgres extension (already installed for the lake's catalog), nothing written to the source.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import UTC, datetime
from pathlib import Path

import duckdb
import yaml

from ingest.core.config import IngestSettings
from ingest.core.lake import connection_config, install_extensions, quote_literal
from ingest.core.source_types import ConnectorEncoding, DeclaredColumn, DeclaredTable, TypesFile

# One row per column of every ordinary or partitioned table: (schema, table, column, type as
# format_type names it, not null, enum labels of the type or of its element type, position in the key).
COLUMNS_SQL = """
select n.nspname, c.relname, a.attname, format_type(a.atttypid, a.atttypmod), a.attnotnull,
       (select array_to_string(array_agg(e.enumlabel order by e.enumsortorder), chr(31))
          from pg_enum e
         where e.enumtypid = case when t.typelem <> 0 then t.typelem else t.oid end),
       (select array_position(i.indkey::int2[], a.attnum)
          from pg_index i where i.indrelid = c.oid and i.indisprimary)
  from pg_attribute a
  join pg_class c on c.oid = a.attrelid
  join pg_namespace n on n.oid = c.relnamespace
  join pg_type t on t.oid = a.atttypid
 where c.relkind in ('r', 'p') and a.attnum > 0 and not a.attisdropped
   and n.nspname not in ('pg_catalog', 'information_schema') and n.nspname not like 'pg\\_%'
 order by n.nspname, c.relname, a.attnum
"""

Row = tuple[str, str, str, str, bool, str | None, int | None]


class PullError(RuntimeError):
    """The source cannot be read; the message says what to check."""


def read_columns(settings: IngestSettings, dsn: str) -> list[Row]:
    if not dsn.startswith(("postgresql://", "postgres://")) and "dbname=" not in dsn and "host=" not in dsn:
        raise PullError(
            f"--source-dsn {dsn.split('@')[-1]!r} is not a PostgreSQL connection string "
            "(postgresql://user@host:port/database, or libpq key=value); only PostgreSQL sources are "
            "supported so far"
        )
    install_extensions(settings.extension_dir)
    con = duckdb.connect(config=connection_config(settings))
    try:
        con.execute(f"attach {quote_literal(dsn)} as source (type postgres, read_only)")
        query = COLUMNS_SQL.replace("'", "''")
        return [
            tuple(row) for row in con.execute(f"select * from postgres_query('source', '{query}')").fetchall()
        ]
    except duckdb.Error as error:
        raise PullError(f"cannot read the source's catalog: {str(error).splitlines()[0]}") from None
    finally:
        con.close()


def types_files(
    rows: Iterable[Row],
    encoding: ConnectorEncoding,
    schemas: list[str] | None = None,
    server: str | None = None,
) -> dict[str, TypesFile]:
    """One types file per source schema (only `schemas`, when given), of `server` (the connector's topic
    prefix) when given: then it types that server's events only."""
    tables: dict[str, dict[str, dict[str, DeclaredColumn]]] = {}
    keys: dict[tuple[str, str], list[tuple[int, str]]] = {}
    for schema, table, column, source_type, not_null, labels, key_position in rows:
        if schemas and schema not in schemas:
            continue
        enum = labels.split(chr(31)) if labels else None
        declared = DeclaredColumn(type=source_type, not_null=bool(not_null), enum=enum)
        tables.setdefault(schema, {}).setdefault(table, {})[column] = declared
        if key_position is not None:
            keys.setdefault((schema, table), []).append((key_position, column))
    return {
        schema: TypesFile(
            server=server,
            schema=schema,
            connector=encoding,
            tables={
                table: DeclaredTable(
                    primary_key=[c for _, c in sorted(keys.get((schema, table), []))], columns=columns
                )
                for table, columns in sorted(by_table.items())
            },
        )
        for schema, by_table in sorted(tables.items())
    }


def render(types: TypesFile, source: str, now: datetime | None = None) -> str:
    stamp = (now or datetime.now(UTC)).strftime("%Y-%m-%d %H:%M UTC")
    header = (
        f"# Column types of schema {types.schema_name!r} of {source}, written by `ingest types pull` on "
        f"{stamp}.\n"
        "# The ingester types events without a Connect schema by it (docs/dbt.md, 'Types without Connect\n"
        "# schemas'); `connector` must match the Debezium connector's settings of those names.\n"
        "# Review and commit it; pull again after the source's schema changes.\n"
    )
    body = types.model_dump(by_alias=True, exclude_none=True)
    for table in body["tables"].values():
        for column in table["columns"].values():
            if not column.get("not_null"):
                column.pop("not_null", None)
        if not table["primary_key"]:
            del table["primary_key"]
    return header + yaml.safe_dump(body, sort_keys=False, allow_unicode=True, width=110)


def write_types_files(files: dict[str, TypesFile], directory: Path, source: str) -> list[Path]:
    directory.mkdir(parents=True, exist_ok=True)
    written = []
    for schema, types in files.items():
        path = directory / (f"{types.server}__{schema}.yml" if types.server else f"{schema}.yml")
        path.write_text(render(types, source))
        written.append(path)
    return written
