"""What runs beside the consumer loop of `ingest run`: the metrics endpoint, the run record that
`ingest status` reads, and continuous dbt builds. None of them can stop ingestion: each failure is logged.
"""

from __future__ import annotations

import contextlib
import logging
import threading
import time
from collections.abc import Callable

import duckdb

from ingest.core.batch import Batch
from ingest.core.config import IngestSettings
from ingest.core.metrics import IngestMetrics, MetricsServer
from ingest.core.ownership import Member, new_run_id
from ingest.embedded.catalog import connect_lake
from ingest.ops.dbt_runner import ContinuousBuilds, parse_interval
from ingest.ops.leases import DBT_BUILDS, LakeLease
from ingest.ops.status import RunInfo, finish_run, newest_source_times, register_run

log = logging.getLogger(__name__)

LakeConnection = Callable[[], duckdb.DuckDBPyConnection]
RECORD_ATTEMPTS = 5


class RunServices:
    def __init__(self, settings: IngestSettings) -> None:
        """Raises ValueError for an unusable setting (e.g. an interval that does not parse)."""
        self.settings = settings
        self.run_id = new_run_id()
        self.member = Member.this_process(settings.group_id, self.run_id)
        self.metrics = IngestMetrics(member=self.run_id)
        self.server: MetricsServer | None = None
        self.builds: ContinuousBuilds | None = None
        if settings.dbt_build_every:
            interval = parse_interval(settings.dbt_build_every)
            self.builds = ContinuousBuilds(
                settings,
                interval,
                (settings.dbt_select or "").split(),
                self.metrics,
                lease=LakeLease(
                    lambda: connect_lake(settings), DBT_BUILDS, self.member, max(60.0, 3 * interval)
                ),
            )
        self._registered = False
        self._recorder: threading.Thread | None = None

    def start(self) -> None:
        """Serve metrics, record the run in the lake (in the background), start continuous builds."""
        settings = self.settings
        if settings.metrics_port is not None:
            try:
                self.server = self.metrics.serve(settings.metrics_port, settings.metrics_host)
                log.info(
                    "Prometheus metrics on http://%s:%d/metrics", settings.metrics_host, self.server.port
                )
            except OSError as error:
                log.error(
                    "metrics endpoint not started on %s:%d (%s); ingesting without it",
                    settings.metrics_host,
                    settings.metrics_port,
                    error,
                )
        info = RunInfo(
            self.run_id, settings.target, self.server.port if self.server else None, settings.dbt_build_every
        )
        from ingest.core.lake import install_extensions
        from ingest.embedded.catalog import catalog_dsn

        try:
            # Here, not in the thread: installing extensions and starting the embedded catalog are not
            # thread-safe. The sink reports an unreachable catalog itself.
            install_extensions(settings.extension_dir)
            dsn = catalog_dsn(settings)
        except Exception as error:
            log.warning("could not record this run in the lake (ingest status will not see it): %s", error)
            dsn = None
        self._recorder = threading.Thread(
            target=self._record_start, args=(info, dsn), name="run-record", daemon=True
        )
        self._recorder.start()
        if self.builds is not None:
            self.builds.start()

    def _record_start(self, info: RunInfo, dsn: str | None) -> None:
        """Record the run and seed the freshness metric, on a connection of its own, in the background:
        ingestion does not wait for it (start-up is what a restart after a crash waits for)."""
        from ingest.core.lake import connect

        for attempt in range(1, RECORD_ATTEMPTS + 1):
            try:
                if dsn is None:
                    return
                con = connect(self.settings, dsn)
                try:
                    if not self._registered:
                        register_run(con, info)  # may race the sink's first DDL: retried
                        self._registered = True
                    self.metrics.note_source_ts(newest_source_times(con))
                    return
                finally:
                    con.close()
            except Exception as error:
                if attempt == RECORD_ATTEMPTS:
                    log.warning(
                        "could not record this run in the lake (ingest status may miss it): %s", error
                    )
                    return
                time.sleep(0.5 * attempt)

    def on_batch(self, _batch: Batch, _seconds: float) -> None:
        if self.builds is not None:
            self.builds.notify_landed()

    def stop(self, outcome: str, lake: LakeConnection | None = None) -> None:
        if self.builds is not None:
            self.builds.stop()
        if self._recorder is not None:
            self._recorder.join(timeout=30)
        if self._registered:
            try:
                self._with_lake(lake, lambda c: finish_run(c, self.run_id, outcome[:1000]))
            except Exception as error:
                log.warning("could not record the end of this run in the lake: %s", error)
        if self.server is not None:
            self.server.close()
            self.server = None

    def _with_lake(
        self, lake: LakeConnection | None, action: Callable[[duckdb.DuckDBPyConnection], None]
    ) -> None:
        """Run `action` on `lake()` (the sink's connection: one connection less); failing that, on a fresh
        connection of its own."""
        if lake is not None:
            try:
                con = lake()
            except duckdb.Error:
                con = None
            if con is not None:
                try:
                    action(con)
                    return
                except duckdb.Error:
                    with contextlib.suppress(duckdb.Error):
                        con.execute("rollback")
        from ingest.embedded.catalog import connect_lake

        fresh = connect_lake(self.settings)
        try:
            action(fresh)
        finally:
            fresh.close()
