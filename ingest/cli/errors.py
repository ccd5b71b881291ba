"""Every failure of a command is one line on stderr saying what went wrong and what to do, and exit code 1.

The traceback is for developers: it is logged at debug level, and printed with `ingest --debug ...` (or
INGEST_DEBUG=1). Commands do not catch errors to make them presentable; this module does, once, around the
whole Typer app.
"""

from __future__ import annotations

import logging
import os
import sys
import traceback
from typing import Any

import typer

from ingest.core.logs import scrub

log = logging.getLogger("ingest.cli")

DEBUG_ENV = "INGEST_DEBUG"
_debug = False


def set_debug(enabled: bool) -> None:
    """Called by the app's callback for `--debug` (the option also reads INGEST_DEBUG)."""
    global _debug
    _debug = enabled


def debug_enabled() -> bool:
    # INGEST_DEBUG also counts when the failure came before the callback ran (an error while parsing)
    return _debug or os.environ.get(DEBUG_ENV, "").lower() in ("1", "true", "yes")


def one_line(text: str) -> str:
    """Messages from libraries span lines (DuckDB, pydantic); a failure is one line."""
    return " ".join(text.split())


def lake_hint(error: Exception) -> str:
    """What to do about a lake error that means the catalog PostgreSQL cannot be reached ('' otherwise)."""
    from ingest.core.sink import catalog_unreachable

    if catalog_unreachable(error):
        return " (is the catalog PostgreSQL up, and lake.catalog / INGEST_LAKE__CATALOG right?)"
    return ""


def describe(error: BaseException) -> str:
    """The one line a user sees for an exception that reached the top of the command line."""
    message = one_line(str(error))
    # The project's own errors are written for users: their message says what to change.
    if type(error).__module__.split(".")[0] == "ingest":
        return message or type(error).__name__
    # a library's errors can only be raised once it is imported: no import here just to compare
    duckdb, kafka = sys.modules.get("duckdb"), sys.modules.get("confluent_kafka")
    if duckdb is not None and isinstance(error, duckdb.Error):
        return f"the lake: {message}{lake_hint(error)}"
    if kafka is not None and isinstance(error, kafka.KafkaException):
        return f"Kafka: {message} (is kafka.bootstrap_servers right and the broker up?)"
    if isinstance(error, OSError):
        return message or type(error).__name__
    return f"unexpected {type(error).__name__}: {message} (a bug? rerun with --debug for the traceback)"


def report(error: BaseException) -> int:
    """Print the one line (the traceback first with --debug), log the traceback at debug level; exit code."""
    line = scrub(describe(error))  # errors from libraries can carry connection strings with passwords
    if debug_enabled():
        sys.stderr.write(scrub("".join(traceback.format_exception(error))))
    else:  # reaches a log handler only where logging is at debug level
        log.debug("%s", line, exc_info=error)
    typer.secho(f"error: {line}", fg=typer.colors.RED, err=True)
    return 1


class IngestTyper(typer.Typer):
    """A Typer app whose uncaught exceptions end as one line and exit code 1 (click's own exits pass)."""

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        try:
            return super().__call__(*args, **kwargs)
        except Exception as error:
            sys.exit(report(error))
