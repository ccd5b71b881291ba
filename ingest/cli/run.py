"""`ingest run`: the ingester, with what runs beside it (metrics, continuous dbt builds, maintenance)."""

from __future__ import annotations

import signal
import threading
from typing import Annotated, Any

import typer

from ingest.cli.app import LogFormat, TargetOption, app, ensure_broker, fail, log, settings_for, setup_logging
from ingest.core.consumer import Ingester, IngestError
from ingest.core.ownership import WrongGroup
from ingest.core.sink import LakeSink, LandingError


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
        setup_logging(log_format)
    except ValueError as error:
        fail(str(error))
    overrides: dict[str, Any] = {
        "topics": topics,
        "metrics_port": metrics_port,
        "dbt_build_every": dbt_build_every,
        "dbt_select": select,
    }
    if bootstrap_servers:
        overrides["kafka"] = {"client": {"bootstrap.servers": bootstrap_servers}}
    settings = settings_for(target, **overrides)
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
    except ValueError as error:  # e.g. a --dbt-build-every that does not parse
        fail(str(error))
    maintenance: threading.Thread | None = None
    if maintain_every:
        from ingest.ops.leases import MAINTENANCE, LakeLease
        from ingest.ops.maintain import parse_duration, run_periodically

        try:
            every, older_than = parse_duration(maintain_every), parse_duration(maintain_older_than)
        except ValueError as error:
            fail(str(error))
        lease = LakeLease(
            lambda: connect_lake(settings), MAINTENANCE, services.member, 1.5 * every.total_seconds() + 60
        )
        # started last before the try below: its finally stops it (a non-daemon thread would keep us alive)
        maintenance = run_periodically(lambda: connect_lake(settings), every, older_than, stop, lease)
    sink = LakeSink.for_lake(lambda: connect_lake(settings), settings.lake, member=services.member)
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
    except (IngestError, LandingError, WrongGroup) as error:
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
