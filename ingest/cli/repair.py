"""`ingest dead-letters list|show|retry` and `ingest replay`: mending what landed wrong or not at all."""

from __future__ import annotations

import json
import logging
import sys
from typing import Annotated, Any

import typer

from ingest.cli.app import (
    LogFormat,
    TargetOption,
    app,
    ensure_broker,
    fail,
    open_lake,
    settings_for,
    setup_logging,
)
from ingest.core.consumer import IngestError
from ingest.core.sink import LandingError

dead_letters_app = typer.Typer(
    help="Inspect dead-lettered and quarantined events; retry them after a fix, exactly once.",
    no_args_is_help=True,
)
app.add_typer(dead_letters_app, name="dead-letters")


# -------------------------------------------------------------------------------------- dead letters
def _failed_events(target: str | None, include_resolved: bool) -> list[Any]:
    from ingest.core.sink import LakeSink
    from ingest.embedded.catalog import connect_lake
    from ingest.ops.retry import load_failed

    settings = settings_for(target)
    open_lake(settings).close()  # fail at once on a catalog that is not there (the sink would wait for it)
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

    setup_logging("text", level=logging.WARNING)
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

    setup_logging("text", level=logging.WARNING)
    try:
        wanted = parse_id(event_id)
    except RetryError as error:
        fail(str(error))
    matches = [
        e
        for e in _failed_events(target, include_resolved=True)
        if (e.kind, e.record.topic, e.record.partition, e.record.offset) == wanted
    ]
    if not matches:
        fail(f"no dead letter {event_id}")
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

    setup_logging("text")
    settings = settings_for(target)
    open_lake(settings).close()  # fail at once on a catalog that is not there (the sink would wait for it)
    try:
        result = Retry(settings, lambda: connect_lake(settings)).run(ids or [], table, everything)
    except (RetryError, StagingReplaced, LandingError) as error:
        fail(str(error), 2)
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

    setup_logging(log_format)
    settings = settings_for(target)
    try:
        since = parse_from(from_)  # before starting a broker for nothing
        ensure_broker(settings)
        result = Replay(settings, lambda: connect_lake(settings), topics, since).run()
    except (ReplayError, IngestError, LandingError) as error:
        fail(str(error), 2)
    typer.echo(
        f"replay {result.replay_id}: {result.records} records read, {result.rows} rows landed, "
        f"{result.dead_letters} dead letters, {result.skipped_older} older than --from skipped; "
        f"switched {len(result.switched)} tables ({', '.join(result.switched)})"
        + (f", dropped {', '.join(result.dropped)}" if result.dropped else "")
        + f" in {result.seconds:.1f} s ({result.switch_attempts} switch attempts)"
    )
