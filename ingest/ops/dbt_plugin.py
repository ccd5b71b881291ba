"""dbt-duckdb plugin: lets a plain `dbt build` reach the lake with the same settings as the ingester.

It reads `profiles/ingest.yml` for the profile's target, installs the DuckDB extensions offline, starts the
embedded catalog on `dev`, points the `lake` attachment at the catalog and data path (giving DuckDB the S3
secret first when the data path is s3://), and serializes dbt runs on one target: a second `dbt build`
waits for the first instead of conflicting with it.

It also records every `dbt build|run|test|seed|snapshot` that reached the lake, whoever started it (an
analyst by hand, a scheduler, or `ingest run --dbt-build-every`), as one row of `staging._cdc_dbt_builds`:
when it started (the run lock taken) and finished, its result and per-status node counts from dbt's own
`run_results.json` of this invocation, and the selection. `ingest status` shows the last one.
"""

from __future__ import annotations

import atexit
import fcntl
import json
import logging
import os
import socket
import sys
import time
from collections import Counter
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from dbt.adapters.duckdb.plugins import BasePlugin

from ingest.core import contract
from ingest.core.config import IngestSettings, load_settings
from ingest.core.lake import LAKE, connection_config, install_extensions, prepare_connection
from ingest.embedded.catalog import catalog_dsn

log = logging.getLogger(__name__)

BUILDS_TABLE = contract.DBT_BUILDS.qualified
BUILDS_DDL = contract.DBT_BUILDS.ddl
RECORDED_COMMANDS = ("build", "run", "test", "seed", "snapshot")
FAILED_STATUSES = ("error", "fail", "runtime error")
# Set by `ingest run --dbt-build-every` for the builds it starts; a build by hand is "manual".
TRIGGER_ENV = "CDC_DBT_TRIGGER"  # not INGEST_*: that prefix overrides ingest.yml keys


class Plugin(BasePlugin):
    def initialize(self, plugin_config: dict[str, Any]) -> None:
        self.target = str(plugin_config.get("target", "dev"))
        self.serialize = bool(plugin_config.get("serialize_runs", True))
        self.record = bool(plugin_config.get("record_builds", True))
        self._lock_file: Any = None
        self._requested_at = time.time()
        self._started_at: float | None = None
        self._settings: IngestSettings | None = None

    def update_connection_config(self, creds: Any, config: dict[str, Any]) -> None:
        settings = self._settings = load_settings(self.target)
        install_extensions(settings.extension_dir)
        config.update(connection_config(settings))
        if self.serialize:
            self._acquire_run_lock(settings.state_dir / f"dbt-{self.target}.lock")
        if self._started_at is None:
            self._started_at = time.time()
            if self.record:
                atexit.register(self._record_invocation, settings)
        dsn = catalog_dsn(settings)
        for attachment in creds.attach or []:
            if attachment.alias == LAKE:
                attachment.path = f"ducklake:postgres:{dsn}"
                attachment.options = {**(attachment.options or {}), "data_path": settings.data_path}

    def configure_connection(self, conn: Any) -> None:
        """Before dbt-duckdb attaches the lake: what the ingester's connections do first (the S3 secret when
        the target's data is on S3, no progress bar)."""
        if self._settings is not None:
            prepare_connection(conn, self._settings)

    def _acquire_run_lock(self, path: os.PathLike[str]) -> None:
        """Hold an exclusive lock on the target for the life of this dbt process."""
        if self._lock_file is not None:
            return
        os.makedirs(os.path.dirname(path), exist_ok=True)
        handle = open(path, "a+")  # noqa: SIM115 - held open until the process exits
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            print(
                f"another dbt run holds target '{self.target}' ({path}); waiting for it to finish",
                file=sys.stderr,
                flush=True,
            )
            fcntl.flock(handle, fcntl.LOCK_EX)
        self._lock_file = handle

    # ------------------------------------------------------------------------- build records
    def _record_invocation(self, settings: IngestSettings) -> None:
        """At exit (still holding the run lock): one `_cdc_dbt_builds` row for this invocation."""
        try:
            row = self._invocation_row()
            if row is not None:
                write_build_row(settings, row)
        except Exception as error:  # never turn a finished dbt run into a crash at exit
            print(f"warning: could not record this dbt run in {BUILDS_TABLE}: {error}", file=sys.stderr)

    def _invocation_row(self) -> dict[str, Any] | None:
        from dbt.flags import get_flags
        from dbt_common.invocation import get_invocation_id

        flags = get_flags()
        command = getattr(flags, "WHICH", None)
        if command not in RECORDED_COMMANDS:
            return None
        invocation_id = get_invocation_id()
        project_dir = Path(getattr(flags, "PROJECT_DIR", None) or Path.cwd())
        target_path = Path(getattr(flags, "TARGET_PATH", None) or "target")
        results = read_run_results(
            target_path if target_path.is_absolute() else project_dir / target_path, invocation_id
        )
        selection = " ".join(getattr(flags, "SELECT", None) or ())
        exclude = " ".join(getattr(flags, "EXCLUDE", None) or ())
        if exclude:
            selection = f"{selection} --exclude {exclude}".strip()
        return {
            "invocation_id": invocation_id,
            "command": command,
            "target": self.target,
            "requested_at": self._requested_at,
            "started_at": self._started_at or self._requested_at,
            "finished_at": time.time(),
            "selection": selection or None,
            "trigger": os.environ.get(TRIGGER_ENV, "manual"),
            **summarize_results(results),
        }


def read_run_results(target_path: Path, invocation_id: str | None = None) -> dict[str, Any] | None:
    """run_results.json of `invocation_id` (None if dbt stopped before writing it, or it is older)."""
    path = target_path / "run_results.json"
    try:
        document = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    if invocation_id is not None and document.get("metadata", {}).get("invocation_id") != invocation_id:
        return None
    return document


def summarize_results(document: dict[str, Any] | None) -> dict[str, Any]:
    """status, per-status node counts and the first failure's message, from run_results.json."""
    if document is None:
        return {
            "status": "error",
            "counts": {},
            "message": "dbt stopped before running any node (parse or connection error; see logs/dbt.log)",
        }
    results = document.get("results", [])
    counts = Counter(str(r.get("status")) for r in results)
    failed = [r for r in results if r.get("status") in FAILED_STATUSES]
    message = None
    if failed:
        first = failed[0]
        message = f"{len(failed)} failed, first {first.get('unique_id')}: {first.get('message')}"[:1000]
    return {"status": "error" if failed else "success", "counts": dict(counts), "message": message}


def write_build_row(settings: IngestSettings, row: dict[str, Any]) -> None:
    from ingest.embedded.catalog import connect_lake

    con = connect_lake(settings)
    try:
        con.execute("create schema if not exists lake.staging")
        con.execute(BUILDS_DDL)
        con.execute(
            f"insert into {BUILDS_TABLE} values (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            [
                row["invocation_id"],
                row["command"],
                row["target"],
                row["status"],
                _utc(row["requested_at"]),
                _utc(row["started_at"]),
                _utc(row["finished_at"]),
                row["finished_at"] - row["started_at"],
                row["selection"],
                json.dumps(row["counts"]),
                row["message"],
                row["trigger"],
                socket.gethostname(),
                os.getpid(),
            ],
        )
    finally:
        con.close()


def _utc(epoch_seconds: float) -> datetime:
    return datetime.fromtimestamp(epoch_seconds, UTC)
