"""`ingest broker|catalog start|stop|status` and `ingest down`: the dev target's embedded services."""

from __future__ import annotations

from typing import Annotated

import typer

from ingest.cli.app import TargetOption, app, fail, settings_for
from ingest.embedded.broker import EmbeddedBroker, parse_bootstrap
from ingest.embedded.catalog import EmbeddedCatalog

broker_app = typer.Typer(help="The embedded development broker (Tansu).", no_args_is_help=True)
catalog_app = typer.Typer(help="The embedded catalog PostgreSQL of the dev target.", no_args_is_help=True)
app.add_typer(broker_app, name="broker")
app.add_typer(catalog_app, name="catalog")

PortOption = Annotated[int | None, typer.Option(help="port on 127.0.0.1 (default: from ingest.yml)")]


# -------------------------------------------------------------------------------------------- broker
def _broker(target: str | None, port: int | None) -> EmbeddedBroker:
    settings = settings_for(target)
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

    settings = settings_for(target)
    broker = _broker(target, port)
    status = broker.start()
    topics = inventory_topics(topic_prefix or topic_prefix_of(settings.topics))
    partitions = settings.kafka.topic_partitions
    ensure_topics({"bootstrap.servers": broker.bootstrap_servers}, topics, partitions)
    if status.pid is None:
        typer.echo(f"a Kafka broker not started by ingest listens on {broker.bootstrap_servers}: using it")
    else:
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
    settings = settings_for(target)
    if settings.lake.catalog != "embedded":
        fail(f"target {settings.target} uses an external catalog; nothing to manage here")
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
    settings = settings_for(target)
    if settings.kafka.embedded:
        broker_stop(target, None)
    if settings.lake.catalog == "embedded":
        catalog_stop(target)
