"""Prometheus metrics of the ingester, served over HTTP by `ingest run --metrics-port N`.

One `IngestMetrics` owns one `CollectorRegistry` (never prometheus-client's global default registry), so two
ingesters in one process, or the tests, never share counters. The consumer and the sink report into it; the
HTTP server only reads it. Names follow Prometheus conventions: counters end in `_total`, times are seconds.

    cdc_ingest_events_total                    records consumed and landed (rate() = events/s)
    cdc_ingest_rows_total{table}               change rows landed per staging table
    cdc_ingest_batches_total                   micro-batches committed
    cdc_ingest_batch_events                    histogram: records per batch
    cdc_ingest_batch_duration_seconds          histogram: time to land (write + commit) one batch
    cdc_ingest_consumer_lag{topic,partition}   records on the broker not landed yet (fetch high watermark)
    cdc_staging_newest_source_timestamp_seconds{table}  source commit time of the newest landed event
    cdc_staging_freshness_seconds{table}       now minus that (computed at scrape time)
    cdc_ingest_dead_letters_total{topic}       records sent to staging._dead_letters
    cdc_ingest_quarantined_events_total{table} events sent to staging._cdc_quarantine
    cdc_ingest_schema_changes_total{table,change}  create / add_column / widen / quarantine
    cdc_ingest_commit_retries_total            lake commits retried (conflicts, catalog outages)
    cdc_ingest_already_landed_total            re-read records dropped because they were landed before
    cdc_ingest_last_batch_timestamp_seconds    when the last batch committed
    cdc_dbt_builds_total{status}               continuous `dbt build`s by result
    cdc_dbt_build_duration_seconds             histogram: duration of continuous `dbt build`s
    cdc_dbt_last_build_timestamp_seconds       when the last continuous build finished
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from wsgiref.simple_server import WSGIServer

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, start_http_server
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.metrics_core import Metric
from prometheus_client.registry import Collector

BATCH_EVENT_BUCKETS = (1, 10, 50, 100, 500, 1_000, 2_500, 5_000, 10_000, 25_000, 50_000, 100_000)
BATCH_SECONDS_BUCKETS = (0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0)
BUILD_SECONDS_BUCKETS = (1.0, 2.5, 5.0, 10.0, 20.0, 30.0, 60.0, 120.0, 300.0, 600.0, 1800.0)


class _Freshness(Collector):
    """Freshness per table, computed when scraped so it keeps growing while nothing new lands."""

    def __init__(self, newest: Mapping[str, float], lock: threading.Lock, clock: Callable[[], float]) -> None:
        self._newest = newest
        self._lock = lock
        self._clock = clock

    def collect(self) -> Iterator[GaugeMetricFamily]:
        family = GaugeMetricFamily(
            "cdc_staging_freshness_seconds",
            "Seconds since the source commit time of the newest event landed in the staging table",
            labels=["table"],
        )
        now = self._clock()
        with self._lock:
            newest = dict(self._newest)
        for table, ts in sorted(newest.items()):
            family.add_metric([table], max(0.0, now - ts))
        yield family


class _WithMember(Collector):
    """Every series of `inner`, labelled with the member (run) that serves it: several ingesters of one
    lake scraped into one Prometheus stay apart even behind one service address."""

    def __init__(self, inner: CollectorRegistry, labels: Mapping[str, str]) -> None:
        self._inner = inner
        self._labels = dict(labels)

    def collect(self) -> Iterator[Metric]:
        for family in self._inner.collect():
            family.samples = [s._replace(labels={**s.labels, **self._labels}) for s in family.samples]
            yield family


@dataclass
class MetricsServer:
    """The running HTTP endpoint; `close()` stops it."""

    server: WSGIServer
    thread: threading.Thread

    @property
    def port(self) -> int:
        return self.server.server_address[1]

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()
        self.thread.join(timeout=5)


class IngestMetrics:
    def __init__(
        self,
        registry: CollectorRegistry | None = None,
        clock: Callable[[], float] = time.time,
        member: str | None = None,
    ) -> None:
        self.registry = registry if registry is not None else CollectorRegistry()
        self.member = member  # the run id; a `member` label on every served series
        r = self.registry
        self.events = Counter("cdc_ingest_events", "Kafka records consumed and landed", registry=r)
        self.rows = Counter("cdc_ingest_rows", "Change rows landed", ["table"], registry=r)
        self.batches = Counter("cdc_ingest_batches", "Micro-batches committed to the lake", registry=r)
        self.batch_events = Histogram(
            "cdc_ingest_batch_events", "Records per micro-batch", buckets=BATCH_EVENT_BUCKETS, registry=r
        )
        self.batch_seconds = Histogram(
            "cdc_ingest_batch_duration_seconds",
            "Time to land one micro-batch (write and commit, retries included)",
            buckets=BATCH_SECONDS_BUCKETS,
            registry=r,
        )
        self.lag = Gauge(
            "cdc_ingest_consumer_lag",
            "Records on the broker not landed yet: fetch-response high watermark minus landed position",
            ["topic", "partition"],
            registry=r,
        )
        self.newest_source_ts = Gauge(
            "cdc_staging_newest_source_timestamp_seconds",
            "Source commit time of the newest event landed in the staging table",
            ["table"],
            registry=r,
        )
        self.dead_letters = Counter(
            "cdc_ingest_dead_letters", "Records sent to staging._dead_letters", ["topic"], registry=r
        )
        self.quarantined = Counter(
            "cdc_ingest_quarantined_events", "Events sent to staging._cdc_quarantine", ["table"], registry=r
        )
        self.schema_changes = Counter(
            "cdc_ingest_schema_changes", "Staging schema changes", ["table", "change"], registry=r
        )
        self.commit_retries = Counter(
            "cdc_ingest_commit_retries",
            "Lake commits retried after a failed statement or an outage",
            registry=r,
        )
        self.commit_conflicts = Counter(
            "cdc_ingest_commit_conflicts",
            "Lake commits retried because another writer (member) committed first",
            registry=r,
        )
        self.untyped_columns = Gauge(
            "cdc_ingest_untyped_columns",
            "Columns of a table landed with a types file that the file does not type (inferred from values "
            "until `ingest types pull` runs again), as of its last batch",
            ["table"],
            registry=r,
        )
        self.owned_partitions = Gauge(
            "cdc_ingest_owned_partitions", "Partitions this member owns in the consumer group", registry=r
        )
        self.already_landed = Counter(
            "cdc_ingest_already_landed",
            "Re-read records dropped because they were already landed",
            registry=r,
        )
        self.last_batch_ts = Gauge(
            "cdc_ingest_last_batch_timestamp_seconds", "When the last micro-batch committed", registry=r
        )
        self.dbt_builds = Counter("cdc_dbt_builds", "Continuous dbt builds by result", ["status"], registry=r)
        self.dbt_build_seconds = Histogram(
            "cdc_dbt_build_duration_seconds",
            "Duration of continuous dbt builds",
            buckets=BUILD_SECONDS_BUCKETS,
            registry=r,
        )
        self.dbt_last_build_ts = Gauge(
            "cdc_dbt_last_build_timestamp_seconds", "When the last continuous dbt build finished", registry=r
        )
        self._clock = clock
        self._lock = threading.Lock()
        self._newest: dict[str, float] = {}
        r.register(_Freshness(self._newest, self._lock, clock))

    # ------------------------------------------------------------------------------------- updates
    def observe_batch(
        self,
        records: int,
        seconds: float,
        rows: Mapping[str, int],
        dead_letters: Mapping[str, int],
        quarantined: Mapping[str, int],
        schema_changes: Mapping[tuple[str, str], int],
        newest_source_ts: Mapping[str, float],
        untyped_columns: Mapping[str, Sequence[str]] | None = None,
    ) -> None:
        """A committed micro-batch: what it held and how long it took to land."""
        self.events.inc(records)
        self.batches.inc()
        self.batch_events.observe(records)
        self.batch_seconds.observe(seconds)
        self.last_batch_ts.set(self._clock())
        for table, n in rows.items():
            self.rows.labels(table).inc(n)
        for topic, n in dead_letters.items():
            self.dead_letters.labels(topic).inc(n)
        for table, n in quarantined.items():
            self.quarantined.labels(table).inc(n)
        for (table, change), n in schema_changes.items():
            self.schema_changes.labels(table, change).inc(n)
        for table, names in (untyped_columns or {}).items():
            self.untyped_columns.labels(table).set(len(names))
        self.note_source_ts(newest_source_ts)

    def note_source_ts(self, newest_source_ts: Mapping[str, float]) -> None:
        """Newest landed source commit time per table (epoch seconds); older values never win."""
        with self._lock:
            for table, ts in newest_source_ts.items():
                if ts > self._newest.get(table, float("-inf")):
                    self._newest[table] = ts
                    self.newest_source_ts.labels(table).set(ts)

    def set_lag(self, topic: str, partition: int, lag: int) -> None:
        self.lag.labels(topic, str(partition)).set(lag)

    def observe_dbt_build(self, status: str, seconds: float) -> None:
        self.dbt_builds.labels(status).inc()
        self.dbt_build_seconds.observe(seconds)
        self.dbt_last_build_ts.set(self._clock())

    # ---------------------------------------------------------------------------------------- HTTP
    def serve(self, port: int, host: str = "127.0.0.1") -> MetricsServer:
        """Serve /metrics on host:port (port 0: any free port) until `close()`."""
        served = self.registry
        if self.member is not None:
            served = CollectorRegistry()
            served.register(_WithMember(self.registry, {"member": self.member}))
        server, thread = start_http_server(port, addr=host, registry=served)
        return MetricsServer(server, thread)
