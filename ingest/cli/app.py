"""The Typer app, the options every command shares and the helpers they use (settings, lake, broker)."""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Annotated, Any, NoReturn

import typer

from ingest.cli.errors import DEBUG_ENV, IngestTyper, debug_enabled, lake_hint, one_line, set_debug
from ingest.core.config import IngestSettings, load_settings
from ingest.core.logs import configure_logging, scrub
from ingest.embedded.broker import EmbeddedBroker, parse_bootstrap

if TYPE_CHECKING:
    import duckdb

app = IngestTyper(
    help="Debezium change events from Kafka into DuckLake staging tables, exactly once.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
)

log = logging.getLogger("ingest")

TargetOption = Annotated[str | None, typer.Option("--target", "-t", help="target in profiles/ingest.yml")]
LogFormat = Annotated[str, typer.Option("--log-format", help="text or json")]


@app.callback()
def main_options(
    debug: Annotated[
        bool,
        typer.Option("--debug", envvar=DEBUG_ENV, help="on failure, show the traceback; log at debug level"),
    ] = False,
) -> None:
    """Debezium change events from Kafka into DuckLake staging tables, exactly once."""
    set_debug(debug)


def setup_logging(log_format: str = "text", level: int = logging.INFO) -> None:
    """`configure_logging`, at debug level with --debug."""
    configure_logging(log_format, logging.DEBUG if debug_enabled() else level)


def settings_for(target: str | None, **overrides: Any) -> IngestSettings:
    """The target's settings with the options given on top (a ConfigError says what is wrong)."""
    return load_settings(target, overrides={k: v for k, v in overrides.items() if v is not None})


def fail(message: str, code: int = 1) -> NoReturn:
    """Stop the command with one line on stderr (errors from libraries can carry passwords: scrubbed)."""
    typer.secho(f"error: {scrub(one_line(message))}", fg=typer.colors.RED, err=True)
    raise typer.Exit(code)


def open_lake(settings: IngestSettings) -> duckdb.DuckDBPyConnection:
    """Connect to the target's lake, or fail with a clear message."""
    from duckdb import Error as DuckDBError

    from ingest.embedded.catalog import connect_lake

    try:
        return connect_lake(settings)
    except DuckDBError as error:
        fail(f"cannot open the lake: {error}{lake_hint(error)}")


def ensure_broker(settings: IngestSettings) -> None:
    """On targets with an embedded broker, start it unless a Kafka broker already answers there."""
    if settings.kafka.embedded:
        host, port = parse_bootstrap(settings.kafka.bootstrap_servers)
        EmbeddedBroker(settings.state_dir, port, host).start()
