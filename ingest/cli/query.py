"""`ingest status` and `ingest sql`: reading the lake (and the broker's lag) from the command line."""

from __future__ import annotations

import json
import logging
import struct
import sys
from datetime import date, datetime, time
from decimal import Decimal
from typing import TYPE_CHECKING, Annotated, Any
from uuid import UUID

import typer

from ingest.cli.app import TargetOption, app, fail, open_lake, settings_for, setup_logging

if TYPE_CHECKING:
    from duckdb.sqltypes import DuckDBPyType


@app.command()
def status(
    target: TargetOption = None,
    as_json: Annotated[bool, typer.Option("--json", help="one JSON document instead of the screen")] = False,
    broker: Annotated[bool, typer.Option("--broker/--no-broker", help="ask the broker for the lag")] = True,
) -> None:
    """Lag, last batch, freshness, dead letters, quarantine, last dbt build: whether or not ingest runs."""
    setup_logging("text", level=logging.WARNING)
    settings = settings_for(target)
    from duckdb import Error as DuckDBError

    from ingest.ops import status as st

    con = open_lake(settings)
    try:
        report = st.collect_status(settings, con, probe_broker=broker)
    except DuckDBError as error:
        fail(f"cannot read the lake: {error}")
    finally:
        con.close()
    if as_json:
        sys.stdout.write(json.dumps(st.jsonable(report), ensure_ascii=False, indent=2) + "\n")
        return
    from rich.console import Console

    st.render(report, Console(width=max(120, Console().width)))


def shortest_float32(value: float) -> float:
    """The shortest decimal that reads back as the same single-precision float: DuckDB hands a FLOAT (a
    PostgreSQL `real`) to Python as a double, which prints 0.15 as 0.15000000596046448."""
    if value != value or value in (float("inf"), float("-inf")):
        return value
    for digits in range(1, 10):  # 9 significant digits always round-trip a float32
        candidate = float(f"{value:.{digits}g}")
        if struct.unpack("f", struct.pack("f", candidate))[0] == value:
            return candidate
    return value


def as_single_precision(value: Any, column_type: DuckDBPyType) -> Any:
    """`value` with every FLOAT in it (also inside lists, structs and maps) by its shortest float32 form."""
    if value is None:
        return None
    kind = column_type.id
    if kind == "float":
        return shortest_float32(value)
    if kind in ("list", "array"):
        item = column_type.children[0][1]
        return [as_single_precision(v, item) for v in value]
    if kind == "struct":
        fields = dict(column_type.children)
        return {k: as_single_precision(v, fields[k]) for k, v in value.items()}
    if kind == "map":
        key_type, value_type = column_type.children[0][1], column_type.children[1][1]
        return {
            as_single_precision(k, key_type): as_single_precision(v, value_type) for k, v in value.items()
        }
    return value


def _has_float(column_type: DuckDBPyType) -> bool:
    if column_type.id == "float":
        return True
    if column_type.id in ("list", "array", "struct", "map"):
        return any(_has_float(child) for _, child in column_type.children if not isinstance(child, str))
    return False


def _jsonable(value: Any) -> Any:
    if isinstance(value, (datetime, date, time)):
        return value.isoformat()
    if isinstance(value, (Decimal, UUID)):
        return str(value)
    if isinstance(value, bytes):
        return value.hex()
    if isinstance(value, list):
        return [_jsonable(v) for v in value]
    if isinstance(value, dict):
        return {k: _jsonable(v) for k, v in value.items()}
    return value


@app.command()
def sql(
    query: Annotated[
        str, typer.Argument(help="SQL; the lake is attached as `lake` and is the default database")
    ],
    target: TargetOption = None,
    as_json: Annotated[bool, typer.Option("--json", help="one JSON object per line")] = False,
) -> None:
    """Run a query against the target's lake and print the rows."""
    setup_logging("text", level=logging.WARNING)
    settings = settings_for(target)
    from duckdb import Error as DuckDBError

    con = open_lake(settings)
    try:
        cursor = con.execute(query)
        if cursor.description is None:
            return
        names = [d[0] for d in cursor.description]
        types = [d[1] for d in cursor.description]
        rows = cursor.fetchall()
    except DuckDBError as error:
        fail(str(error))
    finally:
        con.close()
    single = [i for i, column_type in enumerate(types) if _has_float(column_type)]
    if single:
        rows = [
            tuple(as_single_precision(v, types[i]) if i in single else v for i, v in enumerate(row))
            for row in rows
        ]
    if as_json:
        for row in rows:
            sys.stdout.write(
                json.dumps(_jsonable(dict(zip(names, row, strict=True))), ensure_ascii=False) + "\n"
            )
        return
    from rich.console import Console
    from rich.table import Table

    table = Table(*names, show_lines=False)
    for row in rows:
        table.add_row(*("NULL" if v is None else str(v) for v in row))
    Console().print(table)
