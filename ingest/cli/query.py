"""`ingest status` and `ingest sql`: reading the lake (and the broker's lag) from the command line."""

from __future__ import annotations

import json
import logging
import sys
from datetime import date, datetime, time
from decimal import Decimal
from typing import Annotated, Any
from uuid import UUID

import typer

from ingest.cli.app import TargetOption, app, fail, open_lake, settings_for, setup_logging


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
        rows = cursor.fetchall()
    except DuckDBError as error:
        fail(str(error))
    finally:
        con.close()
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
