"""What runs beside the consumer loop of `ingest run`: the metrics endpoint, the run record that
`ingest status` reads, and continuous dbt builds. None of them can stop ingestion: each failure is logged.
"""

from __future__ import annotations

import logging

from ingest.batch import Batch
from ingest.config import IngestSettings
from ingest.dbt_runner import ContinuousBuilds, parse_interval
from ingest.metrics import IngestMetrics, MetricsServer
from ingest.status import RunInfo, finish_run, new_run_id, newest_source_times, register_run

log = logging.getLogger(__name__)


class RunServices:
    def __init__(self, settings: IngestSettings) -> None:
        """Raises ValueError for an unusable setting (e.g. an interval that does not parse)."""
        self.settings = settings
        self.metrics = IngestMetrics()
        self.server: MetricsServer | None = None
        self.run_id = new_run_id()
        self.builds: ContinuousBuilds | None = None
        if settings.dbt_build_every:
            self.builds = ContinuousBuilds(
                settings,
                parse_interval(settings.dbt_build_every),
                (settings.dbt_select or "").split(),
                self.metrics,
            )
        self._registered = False

    def start(self) -> None:
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
        from ingest.lake import connect

        try:
            con = connect(settings)
            try:
                register_run(
                    con,
                    RunInfo(
                        self.run_id,
                        settings.target,
                        self.server.port if self.server else None,
                        settings.dbt_build_every,
                    ),
                )
                self._registered = True
                self.metrics.note_source_ts(newest_source_times(con))
            finally:
                con.close()
        except Exception as error:
            log.warning("could not record this run in the lake (ingest status will not see it): %s", error)
        if self.builds is not None:
            self.builds.start()

    def on_batch(self, _batch: Batch, _seconds: float) -> None:
        if self.builds is not None:
            self.builds.notify_landed()

    def stop(self, outcome: str) -> None:
        if self.builds is not None:
            self.builds.stop()
        if self._registered:
            from ingest.lake import connect

            try:
                con = connect(self.settings)
                try:
                    finish_run(con, self.run_id, outcome[:1000])
                finally:
                    con.close()
            except Exception as error:
                log.warning("could not record the end of this run in the lake: %s", error)
        if self.server is not None:
            self.server.close()
            self.server = None
