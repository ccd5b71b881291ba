"""The `ingest` command line."""

from __future__ import annotations

import json
import logging
import signal
import sys
import threading
from datetime import date, datetime, time
from decimal import Decimal
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any
from uuid import UUID

import typer

from ingest.core.config import ConfigError, IngestSettings, load_settings
from ingest.core.consumer import Ingester, IngestError
from ingest.core.logs import configure_logging, scrub
from ingest.core.sink import LakeSink, LandingError
from ingest.embedded.broker import EmbeddedBroker, parse_bootstrap
from ingest.embedded.catalog import EmbeddedCatalog

if TYPE_CHECKING:
    import duckdb

app = typer.Typer(
    help="Debezium change events from Kafka into DuckLake staging tables, exactly once.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
)
broker_app = typer.Typer(help="The embedded development broker (Tansu).", no_args_is_help=True)
catalog_app = typer.Typer(help="The embedded catalog PostgreSQL of the dev target.", no_args_is_help=True)
app.add_typer(broker_app, name="broker")
app.add_typer(catalog_app, name="catalog")

log = logging.getLogger("ingest")

TargetOption = Annotated[str | None, typer.Option("--target", "-t", help="target in profiles/ingest.yml")]
LogFormat = Annotated[str, typer.Option("--log-format", help="text or json")]


def _settings(target: str | None, **overrides: Any) -> IngestSettings:
    try:
        return load_settings(target, overrides={k: v for k, v in overrides.items() if v is not None})
    except ConfigError as error:
        _fail(str(error))


def _fail(message: str, code: int = 1) -> None:
    # errors from libraries can carry connection strings with passwords
    typer.secho(f"error: {scrub(message)}", fg=typer.colors.RED, err=True)
    raise typer.Exit(code)


def _open_lake(settings: IngestSettings) -> duckdb.DuckDBPyConnection:
    """Connect to the target's lake, or fail with a clear message."""
    from duckdb import Error as DuckDBError

    from ingest.embedded.catalog import connect_lake

    try:
        return connect_lake(settings)
    except DuckDBError as error:
        _fail(f"cannot open the lake: {error}")


def ensure_broker(settings: IngestSettings) -> None:
    """On targets with an embedded broker, start it if it is not running."""
    if settings.kafka.embedded:
        host, port = parse_bootstrap(settings.kafka.bootstrap_servers)
        EmbeddedBroker(settings.state_dir, port, host).start()


# ----------------------------------------------------------------------------------------------- run
@app.command()
def run(
    target: TargetOption = None,
    bootstrap_servers: Annotated[str | None, typer.Option(help="override kafka bootstrap.servers")] = None,
    topics: Annotated[str | None, typer.Option(help="regular expression of topics to consume")] = None,
    until_caught_up: Annotated[
        bool, typer.Option(help="exit 0 once every partition is read to its end")
    ] = False,
    from_beginning: Annotated[
        bool, typer.Option(help="re-read every partition from offset 0 (records already landed are dropped)")
    ] = False,
    log_format: LogFormat = "text",
    metrics_port: Annotated[
        int | None, typer.Option(min=0, max=65535, help="serve Prometheus /metrics here (0: any free port)")
    ] = None,
    dbt_build_every: Annotated[
        str | None, typer.Option(help="continuous mode: run an incremental `dbt build` this often (30s, 5m)")
    ] = None,
    select: Annotated[str | None, typer.Option(help="dbt --select for the continuous builds")] = None,
    maintain_every: Annotated[
        str | None, typer.Option(help="run `ingest maintain` from the ingester this often, e.g. 1h")
    ] = None,
    maintain_older_than: Annotated[str, typer.Option(help="--older-than of scheduled maintenance")] = "1h",
) -> None:
    """Consume, micro-batch and land into the lake's staging schema, until SIGINT/SIGTERM."""
    try:
        configure_logging(log_format)
    except ValueError as error:
        _fail(str(error))
    overrides: dict[str, Any] = {
        "topics": topics,
        "metrics_port": metrics_port,
        "dbt_build_every": dbt_build_every,
        "dbt_select": select,
    }
    if bootstrap_servers:
        overrides["kafka"] = {"client": {"bootstrap.servers": bootstrap_servers}}
    settings = _settings(target, **overrides)
    stop = threading.Event()

    def request_stop(signum: int, _frame: Any) -> None:
        log.info("%s received: finishing the batch in flight, then stopping", signal.Signals(signum).name)
        stop.set()

    signal.signal(signal.SIGINT, request_stop)
    signal.signal(signal.SIGTERM, request_stop)
    ensure_broker(settings)
    from ingest.embedded.catalog import connect_lake
    from ingest.ops.services import RunServices

    try:
        services = RunServices(settings)
    except ValueError as error:
        _fail(str(error))
    maintenance: threading.Thread | None = None
    if maintain_every:
        from ingest.ops.maintain import parse_duration, run_periodically

        try:
            every, older_than = parse_duration(maintain_every), parse_duration(maintain_older_than)
        except ValueError as error:
            _fail(str(error))
        # started last before the try below: its finally stops it (a non-daemon thread would keep us alive)
        maintenance = run_periodically(lambda: connect_lake(settings), every, older_than, stop)
    sink = LakeSink.for_lake(lambda: connect_lake(settings), settings.lake)
    outcome = "stopped"
    try:
        services.start()
        stats = Ingester(
            settings,
            sink,
            from_beginning=from_beginning,
            metrics=services.metrics,
            on_batch=services.on_batch,
        ).run(until_caught_up, stop)
    except (IngestError, LandingError) as error:
        log.error("%s", error)
        outcome = f"error: {error}"
        raise typer.Exit(2) from None
    except BaseException as error:
        outcome = f"error: {type(error).__name__}: {error}"
        raise
    finally:
        services.stop(outcome, lambda: sink.con)
        sink.close()
        if maintenance is not None:  # let a maintenance run in progress finish before the process exits
            stop.set()
            maintenance.join()
    log.info(
        "stopped: %d batches, %d records, %d rows landed, %d dead letters, %d already landed",
        stats.batches,
        stats.records,
        stats.change_rows,
        stats.dead_letters,
        stats.already_landed,
    )


# -------------------------------------------------------------------------------------------- status
@app.command()
def status(
    target: TargetOption = None,
    as_json: Annotated[bool, typer.Option("--json", help="one JSON document instead of the screen")] = False,
    broker: Annotated[bool, typer.Option("--broker/--no-broker", help="ask the broker for the lag")] = True,
) -> None:
    """Lag, last batch, freshness, dead letters, quarantine, last dbt build: whether or not ingest runs."""
    configure_logging("text", level=logging.WARNING)
    settings = _settings(target)
    from duckdb import Error as DuckDBError

    from ingest.ops import status as st

    con = _open_lake(settings)
    try:
        report = st.collect_status(settings, con, probe_broker=broker)
    except DuckDBError as error:
        _fail(f"cannot read the lake: {error}")
    finally:
        con.close()
    if as_json:
        sys.stdout.write(json.dumps(st.jsonable(report), ensure_ascii=False, indent=2) + "\n")
        return
    from rich.console import Console

    st.render(report, Console(width=max(120, Console().width)))


# ----------------------------------------------------------------------------------------------- sql
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
    configure_logging("text", level=logging.WARNING)
    settings = _settings(target)
    from duckdb import Error as DuckDBError

    con = _open_lake(settings)
    try:
        cursor = con.execute(query)
        if cursor.description is None:
            return
        names = [d[0] for d in cursor.description]
        rows = cursor.fetchall()
    except DuckDBError as error:
        _fail(str(error))
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


# -------------------------------------------------------------------------------------------- broker
PortOption = Annotated[int | None, typer.Option(help="port on 127.0.0.1 (default: from ingest.yml)")]


def _broker(target: str | None, port: int | None) -> EmbeddedBroker:
    settings = _settings(target)
    host, configured_port = parse_bootstrap(settings.kafka.bootstrap_servers or "127.0.0.1:39092")
    return EmbeddedBroker(settings.state_dir, port or configured_port, host)


@broker_app.command("start")
def broker_start(
    target: TargetOption = None,
    port: PortOption = None,
    topic_prefix: Annotated[
        str | None, typer.Option(help="pre-create this Debezium prefix's topics (default: from `topics`)")
    ] = None,
) -> None:
    """Start the embedded broker (in memory: a restart loses every topic) and pre-create the inventory
    topics with `kafka.topic_partitions` partitions (Tansu would auto-create them with 4)."""
    from ingest.devtools.generator import inventory_topics
    from ingest.embedded.broker import ensure_topics, topic_prefix_of

    settings = _settings(target)
    broker = _broker(target, port)
    status = broker.start()
    topics = inventory_topics(topic_prefix or topic_prefix_of(settings.topics))
    partitions = settings.kafka.topic_partitions
    ensure_topics({"bootstrap.servers": broker.bootstrap_servers}, topics, partitions)
    typer.echo(f"broker running on 127.0.0.1:{status.port} (pid {status.pid}, log {status.log_file})")
    typer.echo(f"topics ({partitions} partition{'s' if partitions > 1 else ''}): {', '.join(topics)}")


@broker_app.command("stop")
def broker_stop(target: TargetOption = None, port: PortOption = None) -> None:
    """Stop the embedded broker and wait until it has exited."""
    typer.echo("broker stopped" if _broker(target, port).stop() else "broker was not running")


@broker_app.command("status")
def broker_status(target: TargetOption = None, port: PortOption = None) -> None:
    """Say whether the embedded broker runs (exit 1 if not)."""
    status = _broker(target, port).status()
    typer.echo(
        f"broker {'running' if status.running else 'not running'} on 127.0.0.1:{status.port}"
        + (f" (pid {status.pid})" if status.pid else "")
    )
    raise typer.Exit(0 if status.running else 1)


# ------------------------------------------------------------------------------------------- catalog
def _catalog(target: str | None) -> EmbeddedCatalog:
    settings = _settings(target)
    if settings.lake.catalog != "embedded":
        _fail(f"target {settings.target} uses an external catalog; nothing to manage here")
    return EmbeddedCatalog(settings.state_dir, settings.lake.catalog_database)


@catalog_app.command("start")
def catalog_start(target: TargetOption = None) -> None:
    """Start the embedded catalog PostgreSQL."""
    dsn = _catalog(target).start()
    typer.echo(f"catalog running: {dsn}")


@catalog_app.command("stop")
def catalog_stop(target: TargetOption = None) -> None:
    """Stop the embedded catalog PostgreSQL."""
    typer.echo("catalog stopped" if _catalog(target).stop() else "catalog was not running")


@catalog_app.command("status")
def catalog_status(target: TargetOption = None) -> None:
    """Say whether the embedded catalog runs (exit 1 if not)."""
    status = _catalog(target).status()
    typer.echo(f"catalog {'running' if status.running else 'not running'} ({status.pgdata})")
    raise typer.Exit(0 if status.running else 1)


@app.command()
def down(target: TargetOption = None) -> None:
    """Stop every embedded service of the target (broker and catalog)."""
    settings = _settings(target)
    if settings.kafka.embedded:
        broker_stop(target, None)
    if settings.lake.catalog == "embedded":
        catalog_stop(target)


# ---------------------------------------------------------------------------------------------- demo
@app.command()
def demo(
    target: TargetOption = None,
    events: Annotated[int, typer.Option(help="change events to generate after the snapshot")] = 5000,
    fresh: Annotated[bool, typer.Option(help="wipe the lake (catalog and data files) first")] = False,
) -> None:
    """The whole pipeline on embedded parts: broker, generator, ingester, lake, dbt build, printed marts."""
    from rich.console import Console

    from ingest.devtools.demo import DemoError, run_demo

    configure_logging("text", level=logging.WARNING)
    try:
        run_demo(_settings(target), events, fresh, Console())
    except (DemoError, IngestError, LandingError) as error:
        _fail(str(error))


def _interrupt(_signum: int, _frame: Any) -> None:
    raise KeyboardInterrupt


@app.command("demo-postgres")
def demo_postgres(
    target: TargetOption = None,
    statements: Annotated[int, typer.Option(help="generated SQL changes after the corpus scenario")] = 500,
    postgres_bin: Annotated[
        str | None, typer.Option(help="PostgreSQL bin directory (default: Debian's 15, else the embedded)")
    ] = None,
    schemas: Annotated[bool, typer.Option("--schemas/--no-schemas", help="JsonConverter schemas")] = True,
) -> None:
    """A real source: PostgreSQL, the Debezium connector on Kafka Connect, the broker, ingester, dbt build;
    then the marts and the curated tables compared with PostgreSQL (exit 3 if they differ)."""
    from rich.console import Console

    from ingest.devtools.demo import DemoError, run_postgres_demo
    from ingest.devtools.postgres_source import SourceError

    configure_logging("text", level=logging.WARNING)
    signal.signal(signal.SIGTERM, _interrupt)  # so PostgreSQL, Java and the broker are stopped on SIGTERM too
    try:
        differences = run_postgres_demo(_settings(target), statements, Console(), postgres_bin, schemas)
    except (DemoError, SourceError, IngestError, LandingError) as error:
        _fail(str(error))
    if not all(d.equal for d in differences):
        _fail("the curated tables differ from PostgreSQL (see above)", code=3)


# -------------------------------------------------------------------------------------------- corpus
@app.command("produce-corpus")
def produce_corpus(
    variant: Annotated[Path, typer.Argument(help="a variant folder of the Debezium corpus")],
    target: TargetOption = None,
    topic_prefix: Annotated[str | None, typer.Option(help="replace the topics' first segment")] = None,
) -> None:
    """Produce a recorded Debezium corpus variant into the broker, in the connector's emission order."""
    from ingest.devtools.corpus import produce, read_variant

    settings = _settings(target)
    ensure_broker(settings)
    count = produce(read_variant(variant, topic_prefix), settings.kafka.client)
    typer.echo(f"produced {count} records from {variant.name}")


# ----------------------------------------------------------------------------------------- generate
@app.command()
def generate(
    events: Annotated[int, typer.Option(min=0, help="change events after the snapshot (0: none)")] = 1000,
    rate: Annotated[float, typer.Option(min=0, help="events per second (0: as fast as possible)")] = 0.0,
    seed: Annotated[int, typer.Option(help="same seed, same events (timestamps follow the clock)")] = 0,
    simulated_clock: Annotated[
        bool,
        typer.Option(
            "--simulated-clock/--wall-clock",
            help="stamp events on the generator's own clock (a fixed start): same seed, identical events",
        ),
    ] = False,
    schemas: Annotated[bool, typer.Option("--schemas/--no-schemas", help="schemas.enable")] = True,
    duplicates: Annotated[float, typer.Option(min=0, max=1, help="probability of a redelivery")] = 0.0,
    late: Annotated[float, typer.Option(min=0, max=1, help="probability of holding a record back")] = 0.0,
    topic_prefix: Annotated[str, typer.Option(help="Debezium topic.prefix")] = "dbserver1",
    after_lsn: Annotated[int, typer.Option(min=0, help="continue a source whose log reached this LSN")] = 0,
    after_tx_id: Annotated[int, typer.Option(min=0, help="... and this transaction id")] = 0,
    partitions: Annotated[int | None, typer.Option(min=1, help="default: kafka.topic_partitions")] = None,
    continue_from: Annotated[
        str | None,
        typer.Option(help="event counts of earlier runs with this seed, e.g. 5000,300: go on from their end"),
    ] = None,
    add_column_after: Annotated[
        int | None, typer.Option(min=0, help="change events before customers gains `phone` (default: half)")
    ] = None,
    target: TargetOption = None,
) -> None:
    """Produce a synthetic inventory change stream, shaped exactly like Debezium's PostgreSQL connector."""
    from ingest.devtools import generator as gen

    configure_logging("text")
    settings = _settings(target)
    ensure_broker(settings)
    config = gen.GeneratorConfig(
        topic_prefix=topic_prefix,
        events=events,
        seed=seed,
        schemas=schemas,
        add_column_after=add_column_after,
        after_lsn=after_lsn,
        after_tx_id=after_tx_id,
        continue_from=tuple(int(n) for n in continue_from.split(",") if n.strip()) if continue_from else (),
    )
    source = gen.InventoryGenerator(config, clock=None if simulated_clock else gen.wall_clock_us)
    faults = gen.DeliveryFaults(source, duplicates=duplicates, late=late, seed=seed)
    report = gen.produce_records(
        faults, settings.kafka.client, source.topics, partitions or settings.kafka.topic_partitions, rate
    )
    for topic in source.topics:
        table = topic.rsplit(".", 1)[-1]
        kinds = {kind: n for (t, kind), n in sorted(source.counts.items()) if t == table}
        typer.echo(f"{topic}: {report.per_topic[topic]} records {kinds}")
    typer.echo(
        f"{source.emitted_change_events} change events, {report.rows} rows to land, {report.records} records "
        f"({faults.stats.duplicates} duplicates, {faults.stats.late} late) in {report.elapsed_s:.1f} s"
        + (" (interrupted)" if report.interrupted else "")
    )
    if report.failed:
        _fail(f"{report.failed} records were not delivered: {report.first_error}")


# ----------------------------------------------------------------------------------------- scaffold
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
    from ingest.embedded.catalog import connect_lake
    from ingest.ops import scaffold as sc

    configure_logging("text", level=logging.WARNING)
    settings = _settings(target)
    project = project_dir or settings.project_dir
    con = connect_lake(settings)
    try:
        tables = sc.read_staging_tables(con, table)
    finally:
        con.close()
    if table is not None and not tables:
        _fail(f'no staging table for {table} (see `ingest sql "select * from staging._cdc_tables"`)')
    plans, skipped = sc.plan_project(project, tables)
    for name in skipped:
        typer.echo(f"{name}: has models already, left alone")
    for plan in plans:
        for path in sc.write_plan(project, plan):
            typer.echo(f"wrote {path}")
        for note in plan.notes:
            typer.secho(f"note: {note}", fg=typer.colors.YELLOW)
    if plans:
        typer.echo("next: dbt build -s " + " ".join(f"+{p.table.table_name}__history+" for p in plans))
    elif not skipped:
        typer.echo("no staging tables yet: run the ingester first")


# ------------------------------------------------------------------------------------------ maintain
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

    configure_logging(log_format)
    settings = _settings(target)
    try:
        age = parse_duration(older_than)
    except ValueError as error:
        _fail(str(error))
    try:
        report = run_maintenance(lambda: connect_lake(settings), age)
    except DuckDBError as error:
        _fail(f"cannot reach the lake: {error}", 2)
    typer.echo(format_report(report))
    if report.failed:
        _fail(f"steps left for the next run: {', '.join(report.failed)}", 3)


# -------------------------------------------------------------------------------------- dead letters
dead_letters_app = typer.Typer(
    help="Inspect dead-lettered and quarantined events; retry them after a fix, exactly once.",
    no_args_is_help=True,
)
app.add_typer(dead_letters_app, name="dead-letters")


def _failed_events(target: str | None, include_resolved: bool) -> list[Any]:
    from ingest.core.sink import LakeSink
    from ingest.embedded.catalog import connect_lake
    from ingest.ops.retry import load_failed

    settings = _settings(target)
    sink = LakeSink.for_lake(lambda: connect_lake(settings), settings.lake)
    try:
        sink.open()  # creates the bookkeeping tables of an empty lake
        return load_failed(sink.con, include_resolved)
    finally:
        sink.close()


@dead_letters_app.command("list")
def dead_letters_list(
    target: TargetOption = None,
    table: Annotated[str | None, typer.Option(help="only events quarantined for this staging table")] = None,
    resolved: Annotated[bool, typer.Option("--resolved", help="include retried ones")] = False,
    as_json: Annotated[bool, typer.Option("--json", help="one JSON object per line")] = False,
) -> None:
    """Open dead letters (did not decode) and quarantined events (schema change of their table)."""
    from ingest.ops.retry import describe

    configure_logging("text", level=logging.WARNING)
    events = [e for e in _failed_events(target, resolved) if table is None or e.table_name == table]
    if as_json:
        for event in events:
            sys.stdout.write(json.dumps(describe(event), ensure_ascii=False) + "\n")
        return
    from rich.console import Console
    from rich.table import Table

    view = Table("id", "kind", "failed at", "bytes", "reason" + (" / resolution" if resolved else ""))
    for event in events:
        info = describe(event)
        reason = str(info["reason"])[:120] + (f" -> {event.resolution}" if event.resolution else "")
        view.add_row(
            event.id, str(info["kind"]), str(info["failed_at"])[:19], str(info["value_bytes"]), reason
        )
    console = Console()
    console.print(view)
    console.print(f"{len(events)} events" + ("" if resolved else " open"))


@dead_letters_app.command("show")
def dead_letters_show(
    event_id: Annotated[str, typer.Argument(help="id from `ingest dead-letters list`")],
    target: TargetOption = None,
) -> None:
    """One event: reason, position, headers, and its raw key and value shown safely."""
    from ingest.ops.retry import RetryError, describe, parse_id, show_bytes

    configure_logging("text", level=logging.WARNING)
    try:
        wanted = parse_id(event_id)
    except RetryError as error:
        _fail(str(error))
    matches = [
        e
        for e in _failed_events(target, include_resolved=True)
        if (e.kind, e.record.topic, e.record.partition, e.record.offset) == wanted
    ]
    if not matches:
        _fail(f"no dead letter {event_id}")
    for event in matches:
        for name, value in describe(event).items():
            typer.echo(f"{name:>16}: {value}")
        typer.echo(f"{'headers':>16}: {event.record.headers}")
        typer.echo(f"{'key':>16}:\n{show_bytes(event.record.key)}")
        typer.echo(f"{'value':>16}:\n{show_bytes(event.record.value)}")


@dead_letters_app.command("retry")
def dead_letters_retry(
    ids: Annotated[
        list[str] | None, typer.Option("--ids", help="ids from `list` (repeat the option)")
    ] = None,
    table: Annotated[
        str | None, typer.Option(help="lift this table's quarantine and land its kept events in order")
    ] = None,
    everything: Annotated[
        bool, typer.Option("--all", help="every open dead letter and quarantined event")
    ] = False,
    target: TargetOption = None,
) -> None:
    """Decode the kept events again and land them, each exactly once (letter resolved in the same commit)."""
    from ingest.core.offsets import StagingReplaced
    from ingest.embedded.catalog import connect_lake
    from ingest.ops.retry import Retry, RetryError

    configure_logging("text")
    settings = _settings(target)
    try:
        result = Retry(settings, lambda: connect_lake(settings)).run(ids or [], table, everything)
    except (RetryError, StagingReplaced, LandingError) as error:
        _fail(str(error), 2)
    typer.echo(
        f"retried as batch {result.batch_id}: {len(result.landed)} landed, "
        f"{len(result.failed_again)} failed again, {len(result.skipped)} skipped"
    )
    for event_id, reason in result.failed_again:
        typer.echo(f"  still failing {event_id}: {reason}")
    if result.failed_again:
        raise typer.Exit(3)


# -------------------------------------------------------------------------------------------- replay
@app.command()
def replay(
    from_: Annotated[
        str,
        typer.Option("--from", help="earliest, or an ISO-8601 time / epoch ms: keep records stamped since"),
    ] = "earliest",
    topics: Annotated[
        str | None, typer.Option(help="regular expression of topics to replay (default: all)")
    ] = None,
    target: TargetOption = None,
    log_format: LogFormat = "text",
) -> None:
    """Rebuild staging from Kafka into fresh tables, then switch atomically (ingesters may keep running)."""
    from ingest.embedded.catalog import connect_lake
    from ingest.ops.replay import Replay, ReplayError, parse_from

    configure_logging(log_format)
    settings = _settings(target)
    ensure_broker(settings)
    try:
        result = Replay(settings, lambda: connect_lake(settings), topics, parse_from(from_)).run()
    except (ReplayError, IngestError, LandingError) as error:
        _fail(str(error), 2)
    typer.echo(
        f"replay {result.replay_id}: {result.records} records read, {result.rows} rows landed, "
        f"{result.dead_letters} dead letters, {result.skipped_older} older than --from skipped; "
        f"switched {len(result.switched)} tables ({', '.join(result.switched)})"
        + (f", dropped {', '.join(result.dropped)}" if result.dropped else "")
        + f" in {result.seconds:.1f} s ({result.switch_attempts} switch attempts)"
    )


def main() -> None:  # pragma: no cover - console entry point
    app()


if __name__ == "__main__":  # pragma: no cover
    app()
