"""`ingest demo`, `demo-postgres`, `produce-corpus` and `generate`: the development tools' commands."""

from __future__ import annotations

import logging
import signal
from pathlib import Path
from typing import Annotated, Any

import typer

from ingest.cli.app import TargetOption, app, ensure_broker, fail, settings_for, setup_logging
from ingest.core.consumer import IngestError
from ingest.core.sink import LandingError


@app.command()
def demo(
    target: TargetOption = None,
    events: Annotated[int, typer.Option(help="change events to generate after the snapshot")] = 5000,
    fresh: Annotated[bool, typer.Option(help="wipe the lake (catalog and data files) first")] = False,
) -> None:
    """The whole pipeline on embedded parts: broker, generator, ingester, lake, dbt build, printed marts."""
    from rich.console import Console

    from ingest.devtools.demo import DemoError, run_demo

    setup_logging("text", level=logging.WARNING)
    try:
        run_demo(settings_for(target), events, fresh, Console())
    except (DemoError, IngestError, LandingError) as error:
        fail(str(error))


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

    setup_logging("text", level=logging.WARNING)
    signal.signal(signal.SIGTERM, _interrupt)  # so PostgreSQL, Java and the broker are stopped on SIGTERM too
    try:
        differences = run_postgres_demo(settings_for(target), statements, Console(), postgres_bin, schemas)
    except (DemoError, SourceError, IngestError, LandingError) as error:
        fail(str(error))
    if not all(d.equal for d in differences):
        fail("the curated tables differ from PostgreSQL (see above)", code=3)


@app.command("produce-corpus")
def produce_corpus(
    variant: Annotated[Path, typer.Argument(help="a variant folder of the Debezium corpus")],
    target: TargetOption = None,
    topic_prefix: Annotated[str | None, typer.Option(help="replace the topics' first segment")] = None,
) -> None:
    """Produce a recorded Debezium corpus variant into the broker, in the connector's emission order."""
    from ingest.devtools.corpus import produce, read_variant

    if not any(variant.glob("*.jsonl")):
        fail(f"no *.jsonl files in {variant}: give a variant folder of the Debezium corpus")
    settings = settings_for(target)
    ensure_broker(settings)
    count = produce(read_variant(variant, topic_prefix), settings.kafka.client)
    typer.echo(f"produced {count} records from {variant.name}")


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

    setup_logging("text")
    settings = settings_for(target)
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
        fail(f"{report.failed} records were not delivered: {report.first_error}")
