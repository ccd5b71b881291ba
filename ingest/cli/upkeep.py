"""`ingest scaffold` and `ingest maintain`: keeping the dbt project and the lake in shape."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Annotated

import typer

from ingest.cli.app import LogFormat, TargetOption, app, fail, open_lake, settings_for, setup_logging
from ingest.cli.errors import lake_hint
from ingest.core.source_types import TypesFileError, load_types_files


@app.command()
def scaffold(
    table: Annotated[
        str | None, typer.Option("--table", help="only this source table, SCHEMA.TABLE (default: all)")
    ] = None,
    project_dir: Annotated[
        Path | None, typer.Option(help="the dbt project to write into (default: this project)")
    ] = None,
    target: TargetOption = None,
) -> None:
    """Write dbt models (current state + history), their YAML and tests for staging tables that have none."""
    from ingest.ops import scaffold as sc

    setup_logging("text", level=logging.WARNING)
    settings = settings_for(target)
    project = project_dir or settings.project_dir
    con = open_lake(settings)
    try:
        tables = sc.read_staging_tables(con, table)
    finally:
        con.close()
    if table is not None and not tables:
        fail(f'no staging table for {table} (see `ingest sql "select * from staging._cdc_tables"`)')
    try:
        types_files = load_types_files(settings.path(settings.types_dir))
    except TypesFileError as error:
        fail(str(error))
    plans, skipped = sc.plan_project(project, tables, types_files)
    for left in skipped:
        typer.echo(f"{left.table_name}: has models already, left alone")
        if left.mismatch:
            typer.secho(f"note: {left.mismatch}", fg=typer.colors.YELLOW)
    for plan in plans:
        for path in sc.write_plan(project, plan):
            typer.echo(f"wrote {path}")
        for note in plan.notes:
            typer.secho(f"note: {note}", fg=typer.colors.YELLOW)
    if plans:
        typer.echo("next: dbt build -s " + " ".join(f"+{p.table.table_name}__history+" for p in plans))
    elif not skipped:
        typer.echo("no staging tables yet: run the ingester first")


@app.command()
def maintain(
    target: TargetOption = None,
    older_than: Annotated[
        str, typer.Option(help="expire snapshots older than this (30s, 15m, 1h, 7d); their files are deleted")
    ] = "1h",
    log_format: LogFormat = "text",
) -> None:
    """Prune offsets, merge small files, expire old snapshots, delete unreferenced files (safe live)."""
    from duckdb import Error as DuckDBError

    from ingest.embedded.catalog import connect_lake
    from ingest.ops.maintain import format_report, parse_duration
    from ingest.ops.maintain import maintain as run_maintenance

    setup_logging(log_format)
    settings = settings_for(target)
    try:
        age = parse_duration(older_than)
    except ValueError as error:
        fail(str(error))
    try:
        report = run_maintenance(lambda: connect_lake(settings), age)
    except DuckDBError as error:
        fail(f"cannot reach the lake: {error}{lake_hint(error)}", 2)
    typer.echo(format_report(report))
    if report.failed:
        fail(f"steps left for the next run: {', '.join(report.failed)}", 3)


types_app = typer.Typer(help="Types files: the source's column types, for events without Connect schemas.")
app.add_typer(types_app, name="types")


@types_app.command("pull")
def types_pull(
    source_dsn: Annotated[
        str, typer.Option("--source-dsn", help="the source PostgreSQL: postgresql://user@host:port/database")
    ],
    schema: Annotated[
        list[str] | None, typer.Option("--schema", help="only this source schema (repeatable; default: all)")
    ] = None,
    server: Annotated[
        str | None,
        typer.Option(
            help="the connector's topic prefix: the files then type only its topics (two sources with one "
            "schema name)"
        ),
    ] = None,
    decimal_handling_mode: Annotated[
        str, typer.Option(help="the connector's decimal.handling.mode: precise, string or double")
    ] = "precise",
    time_precision_mode: Annotated[
        str,
        typer.Option(
            help="the connector's time.precision.mode: adaptive, adaptive_time_microseconds, connect"
        ),
    ] = "adaptive",
    binary_handling_mode: Annotated[
        str, typer.Option(help="the connector's binary.handling.mode: bytes, base64, base64-url-safe, hex")
    ] = "bytes",
    interval_handling_mode: Annotated[
        str, typer.Option(help="the connector's interval.handling.mode: numeric or string")
    ] = "numeric",
    out: Annotated[
        Path | None, typer.Option(help="directory to write to (default: the target's types_dir)")
    ] = None,
    target: TargetOption = None,
) -> None:
    """Write one types file per source schema from the source's catalog (read-only)."""
    from pydantic import ValidationError

    from ingest.core.source_types import ConnectorEncoding
    from ingest.ops import types_pull as tp

    setup_logging("text", level=logging.WARNING)
    settings = settings_for(target)
    try:
        encoding = ConnectorEncoding.model_validate(
            {
                "decimal.handling.mode": decimal_handling_mode,
                "time.precision.mode": time_precision_mode,
                "binary.handling.mode": binary_handling_mode,
                "interval.handling.mode": interval_handling_mode,
            }
        )
    except ValidationError as error:
        first = error.errors()[0]
        fail(f"--{str(first['loc'][0]).replace('.', '-')}: {first['msg']}")
    files = tp.types_files(tp.read_columns(settings, source_dsn), encoding, schema, server)
    if not files:
        fail(f"no tables in {'schemas ' + ', '.join(schema) if schema else 'the source'}: nothing written")
    source = source_dsn.split("@")[-1].split("?")[0]  # host and database, never the user or password
    for path, types in zip(
        tp.write_types_files(files, out or settings.path(settings.types_dir), source),
        files.values(),
        strict=True,
    ):
        typer.echo(f"{path}: {len(types.tables)} tables")
