"""`ingest demo`: the whole pipeline on embedded parts, then the marts, then everything it started stops.

Broker (Tansu) and catalog (PostgreSQL) start if they are not running; the generator streams the inventory
domain into topics of this run; the ingester lands them; `dbt build` builds curated and serving; the marts are
printed. Each run uses topics of its own, so a second run works on top of the first (`--fresh` wipes
the lake first).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from datetime import datetime
from pathlib import Path

from rich.console import Console
from rich.table import Table

from ingest.core.config import IngestSettings
from ingest.core.consumer import Ingester
from ingest.core.ownership import Member
from ingest.core.sink import LakeSink
from ingest.devtools.compare import TableDifference, compare_tables, postgres_tables
from ingest.devtools.postgres_source import SourcePostgres, debezium_source, source_exceptions
from ingest.embedded.broker import EmbeddedBroker, parse_bootstrap
from ingest.embedded.catalog import EmbeddedCatalog, connect_lake


class DemoError(RuntimeError):
    pass


def _bin(name: str) -> str:
    candidate = Path(sys.executable).parent / name
    return str(candidate) if candidate.exists() else name


def run_demo(settings: IngestSettings, events: int, fresh: bool, console: Console) -> None:
    if settings.lake.catalog != "embedded" or not settings.kafka.embedded:
        raise DemoError("the demo runs on embedded parts: use a target with an embedded broker and catalog")
    host, port = parse_bootstrap(settings.kafka.bootstrap_servers)
    broker = EmbeddedBroker(settings.state_dir, port, host)
    catalog = EmbeddedCatalog(settings.state_dir, settings.lake.catalog_database)
    if fresh:
        _wipe(settings, broker, catalog, console)
    started: list[EmbeddedBroker | EmbeddedCatalog] = []
    try:
        _start_services(broker, catalog, started, console)
        prefix = f"demo{int(time.time())}"
        after_lsn, after_tx_id = source_position(settings)
        console.print(f"[bold]1/4[/] generating {events:,} inventory change events into topics {prefix}.*")
        generate = [
            "generate",
            "--events",
            str(events),
            "--rate",
            "0",
            "--seed",
            str(DEMO_SEED),
            "--topic-prefix",
            prefix,
        ]
        earlier = _earlier_runs(settings) if after_lsn else []
        if earlier:  # the same source database goes on: its rows, keys and log continue
            position = ["--continue-from", ",".join(map(str, earlier))]
            console.print(f"      the source goes on from the earlier runs' {sum(earlier):,} events")
        else:  # a lake from elsewhere: at least its log positions go on (newer events, not stale ones)
            position = ["--after-lsn", str(after_lsn), "--after-tx-id", str(after_tx_id)]
        _run([_bin("ingest"), *generate, *position, "--target", settings.target])
        _record_run(settings, [*earlier, events] if earlier or not after_lsn else [])
        console.print("[bold]2/4[/] landing them in the lake (ingest run --until-caught-up)")
        _land(settings, prefix, console)
        console.print("[bold]3/4[/] dbt build (curated current state and history, serving marts, tests)")
        _run([_bin("dbt"), "build", "--target", settings.target], cwd=settings.project_dir)
        console.print("[bold]4/4[/] the serving marts")
        _print_marts(settings, console)
        console.print(
            "\nWhere to look next:\n"
            "  .venv/bin/dbt docs generate && .venv/bin/dbt docs serve   lineage from Kafka topics to marts\n"
            '  .venv/bin/ingest sql "select * from staging._cdc_tables"    what the ingester knows\n'
            "  .venv/bin/ingest status                                  runs, lag, freshness, dead letters\n"
            "  .venv/bin/ingest run                                     keep ingesting (Ctrl-C stops)\n"
        )
    finally:
        for service in reversed(started):
            service.stop()
        if started:
            console.print("stopped what the demo started")


DEMO_SEED = 42


def _start_services(
    broker: EmbeddedBroker,
    catalog: EmbeddedCatalog,
    started: list[EmbeddedBroker | EmbeddedCatalog],
    console: Console,
) -> None:
    """Start the embedded broker and catalog unless they run; what this starts is appended to `started`
    (the caller stops those, and only those, at the end)."""
    with console.status("starting the embedded broker and catalog"):
        if not broker.status().running:
            broker.start()
            started.append(broker)
        if not catalog.status().running:
            catalog.start()
            started.append(catalog)


def _land(settings: IngestSettings, prefix: str, console: Console) -> None:
    """`ingest run --until-caught-up` over the topics `<prefix>.*`, in process; prints what landed."""
    run_settings = settings.model_copy(update={"topics": rf"^{prefix}\."})
    sink = LakeSink.for_lake(
        lambda: connect_lake(run_settings), settings.lake, member=Member.this_process(settings.group_id)
    )
    try:
        stats = Ingester(run_settings, sink).run(until_caught_up=True)
    finally:
        sink.close()
    console.print(
        f"      {stats.change_rows:,} change rows in {stats.batches} batches, "
        f"{stats.dead_letters} dead letters"
    )


def _runs_file(settings: IngestSettings) -> Path:
    return settings.state_dir / "demo-generator-runs.json"


def _earlier_runs(settings: IngestSettings) -> list[int]:
    """Event counts of the earlier demo runs that built this lake (their generator replays them silently)."""
    try:
        recorded = json.loads(_runs_file(settings).read_text())
    except (OSError, ValueError):
        return []
    if recorded.get("seed") != DEMO_SEED or recorded.get("data_path") != settings.data_path:
        return []
    return [int(n) for n in recorded.get("runs", [])]


def _record_run(settings: IngestSettings, runs: list[int]) -> None:
    record = {"seed": DEMO_SEED, "data_path": settings.data_path, "runs": runs}
    _runs_file(settings).write_text(json.dumps(record))


def source_position(settings: IngestSettings) -> tuple[int, int]:
    """Where an earlier run's source log ended, so this run's source goes on after it rather than
    rewinding (events at older positions would rightly be ignored as stale)."""
    con = connect_lake(settings)
    try:
        tables = [
            r[0]
            for r in con.execute(
                "select table_name from duckdb_tables() where database_name = 'lake' "
                "and schema_name = 'staging' and not starts_with(table_name, '_')"
            ).fetchall()
        ]
        if not tables:
            return 0, 0
        union = " union all ".join(
            f'select max(_cdc_lsn) as lsn, max(try_cast(_cdc_tx_id as bigint)) as tx from lake.staging."{t}"'
            for t in tables
        )
        lsn, tx = con.execute(f"select coalesce(max(lsn), 0), coalesce(max(tx), 0) from ({union})").fetchone()
        return int(lsn), int(tx)
    finally:
        con.close()


def _wipe(
    settings: IngestSettings, broker: EmbeddedBroker, catalog: EmbeddedCatalog, console: Console
) -> None:
    broker.stop()
    catalog.stop()
    for path in (catalog.pgdata, Path(settings.data_path)):
        shutil.rmtree(path, ignore_errors=True)
    _runs_file(settings).unlink(missing_ok=True)
    console.print(f"wiped the lake under {settings.state_dir}")


def _run(command: list[str], cwd: Path | None = None, env: dict[str, str] | None = None) -> None:
    result = subprocess.run(command, cwd=cwd, capture_output=True, text=True, env=env)
    if result.returncode != 0:
        # dbt's summary names the failing models and tests; put those first, then the tail
        failures = [line for line in result.stdout.splitlines() if "Failure in" in line or "Error in" in line]
        summary = "\n".join(failures[:20]) + ("\n...\n" if failures else "")
        raise DemoError(
            f"{' '.join(command[:2])} failed:\n{summary}{result.stdout[-3000:]}{result.stderr[-3000:]}"
        )


def _cell(value: object) -> str:
    if value is None:
        return ""
    if isinstance(value, float):
        return f"{value:,.2f}"
    if isinstance(value, datetime):
        return value.strftime("%Y-%m-%d %H:%M")
    return str(value)


def _print_marts(settings: IngestSettings, console: Console, limit: int = 8, max_columns: int = 7) -> None:
    con = connect_lake(settings)
    try:
        marts = [
            r[0]
            for r in con.execute(
                "select table_name from duckdb_tables() "
                "where database_name = 'lake' and schema_name = 'serving' order by table_name"
            ).fetchall()
        ]
        if not marts:
            console.print("(no serving marts yet)")
        for mart in marts:
            total = con.execute(f'select count(*) from lake.serving."{mart}"').fetchone()[0]
            cursor = con.execute(f'select * from lake.serving."{mart}" limit {limit}')
            names = [d[0] for d in cursor.description if not d[0].startswith("_")][:max_columns]
            positions = [i for i, d in enumerate(cursor.description) if d[0] in names]
            more = len([d for d in cursor.description if not d[0].startswith("_")]) - len(names)
            title = f"serving.{mart}: {total:,} rows" + (f", {more} more columns" if more > 0 else "")
            table = Table(*names, title=title, title_justify="left")
            for row in cursor.fetchall():
                table.add_row(*(_cell(row[i]) for i in positions))
            console.print(table)
    finally:
        con.close()


# ------------------------------------------------------------------------------------- demo-postgres
POSTGRES_DEMO_LAKE = "demo_postgres"


def postgres_demo_settings(settings: IngestSettings) -> tuple[IngestSettings, dict[str, str]]:
    """A lake of its own (catalog database and data directory), so the real source's LSNs never meet the
    generator's in the dev lake; the environment passes the same choice to dbt."""
    data_path = str(settings.state_dir / "demo-postgres" / "data")
    lake = settings.lake.model_copy(update={"catalog_database": POSTGRES_DEMO_LAKE, "data_path": data_path})
    env = {
        **os.environ,
        "INGEST_TARGET": settings.target,
        "INGEST_LAKE__CATALOG_DATABASE": POSTGRES_DEMO_LAKE,
        "INGEST_LAKE__DATA_PATH": data_path,
        "INGEST_LAKE__STATE_DIR": str(settings.state_dir),
        "INGEST_KAFKA__BOOTSTRAP_SERVERS": settings.kafka.bootstrap_servers,
    }
    return settings.model_copy(update={"lake": lake}), env


def run_postgres_demo(
    settings: IngestSettings,
    statements: int,
    console: Console,
    postgres_bin: str | None = None,
    schemas: bool = True,
) -> list[TableDifference]:
    """PostgreSQL -> Debezium (Kafka Connect) -> broker -> ingester -> lake -> dbt build, then the marts and
    a cell-by-cell comparison of the curated tables with PostgreSQL. Returns that comparison."""
    if settings.lake.catalog != "embedded" or not settings.kafka.embedded:
        raise DemoError("the demo runs on embedded parts: use a target with an embedded broker and catalog")
    settings, env = postgres_demo_settings(settings)
    host, port = parse_bootstrap(settings.kafka.bootstrap_servers)
    broker = EmbeddedBroker(settings.state_dir, port, host)
    catalog = EmbeddedCatalog(settings.state_dir, settings.lake.catalog_database)
    started: list[EmbeddedBroker | EmbeddedCatalog] = []
    begin = time.monotonic()
    try:
        _start_services(broker, catalog, started, console)
        _wipe_lake(settings, catalog)
        prefix = f"pg{int(time.time())}"
        work_dir = settings.state_dir / "demo-postgres" / "source"
        with debezium_source(
            work_dir,
            settings.kafka.bootstrap_servers,
            prefix,
            statements,
            schemas=schemas,
            postgres_bin=postgres_bin,
            progress=lambda message: console.print(f"[bold]source[/] {message}"),
        ) as source:
            console.print(
                f"[bold]1/4[/] landing topics {prefix}.* in the lake (ingest run --until-caught-up)"
            )
            _land(settings, prefix, console)
            console.print("[bold]2/4[/] dbt build (curated current state and history, serving marts, tests)")
            _run([_bin("dbt"), "build", "--target", settings.target], cwd=settings.project_dir, env=env)
            console.print("[bold]3/4[/] the serving marts")
            _print_marts(settings, console)
            console.print("[bold]4/4[/] curated tables against PostgreSQL, cell by cell")
            differences = _compare(settings, source.postgres, schemas, console)
        console.print(
            f"\ndone in {time.monotonic() - begin:.0f} s. Where to look next (this demo's lake):\n"
            f"  export INGEST_LAKE__CATALOG_DATABASE={POSTGRES_DEMO_LAKE} "
            f"INGEST_LAKE__DATA_PATH={env['INGEST_LAKE__DATA_PATH']}\n"
            '  .venv/bin/ingest sql "select * from curated.inventory__orders"   the curated tables\n'
            "  .venv/bin/ingest status                                         runs, freshness, dbt builds\n"
            "  .venv/bin/dbt docs generate && .venv/bin/dbt docs serve         lineage, topics to marts\n"
            f"  {work_dir}   the connector's configuration and log\n"
        )
        return differences
    finally:
        for service in reversed(started):
            service.stop()
        if started:
            console.print("stopped what the demo started")


def _wipe_lake(settings: IngestSettings, catalog: EmbeddedCatalog) -> None:
    """This demo's lake starts empty on every run: a fresh PostgreSQL starts its LSNs afresh."""
    catalog._server().psql(f'drop database if exists "{settings.lake.catalog_database}" with (force);')
    shutil.rmtree(settings.data_path, ignore_errors=True)


def _compare(
    settings: IngestSettings, postgres: SourcePostgres, schemas: bool, console: Console
) -> list[TableDifference]:
    con = connect_lake(settings)
    try:
        curated = {
            r[0]
            for r in con.execute(
                "select table_name from duckdb_tables() where database_name = 'lake' "
                "and schema_name = 'curated'"
            ).fetchall()
        }
        source = postgres_tables(postgres.dsn, "inventory", con)
        tables = {name: table for name, table in source.items() if f"inventory__{name}" in curated}
        differences = compare_tables(
            lambda sql: con.execute(sql).fetchall(), tables, source_exceptions(schemas)
        )
    finally:
        con.close()
    table = Table("table", "columns", "PostgreSQL rows", "curated rows", "missing", "unexpected", "equal")
    for d in differences:
        table.add_row(
            d.table,
            f"all {len(d.columns)}",
            str(d.postgres_rows),
            str(d.curated_rows),
            str(len(d.missing)),
            str(len(d.unexpected)),
            "yes" if d.equal else "[red]NO[/]",
        )
    console.print(table)
    for d in differences:
        for message in d.messages[:3]:
            console.print(f"  {message}")
    return differences
