"""Prometheus metrics: a registry of its own per ingester, and the endpoint of a running `ingest run`."""

import re
import signal
import socket
import subprocess
import sys
import time
import urllib.request

import pytest
from prometheus_client import REGISTRY, CollectorRegistry
from prometheus_client.parser import text_string_to_metric_families

from conftest import REPO, free_port, produce_items, send
from ingest.core.metrics import IngestMetrics
from ingest.embedded.broker import ensure_topics


def samples(text: str) -> dict[tuple[str, tuple], float]:
    """Samples by (name, labels), without the `member` label every served series carries."""
    found = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            labels = {k: v for k, v in sample.labels.items() if k != "member"}
            found[(sample.name, tuple(sorted(labels.items())))] = sample.value
    return found


def member_labels(text: str) -> set[str | None]:
    return {
        sample.labels.get("member")
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


def test_each_ingester_has_a_registry_of_its_own():
    first, second = IngestMetrics(), IngestMetrics()
    first.observe_batch(10, 0.1, {"s__items": 9}, {"t.s.items": 1}, {}, {("s__items", "create"): 1}, {})
    assert first.registry is not second.registry and first.registry is not REGISTRY
    assert first.registry.get_sample_value("cdc_ingest_events_total") == 10
    assert second.registry.get_sample_value("cdc_ingest_events_total") == 0
    assert REGISTRY.get_sample_value("cdc_ingest_events_total") is None
    explicit = CollectorRegistry()
    assert IngestMetrics(explicit).registry is explicit


def test_freshness_is_computed_when_scraped_and_older_events_never_win():
    now = [1000.0]
    metrics = IngestMetrics(clock=lambda: now[0])
    metrics.note_source_ts({"a": 990.0})
    metrics.note_source_ts({"a": 980.0})  # a late event does not make the table look staler
    assert metrics.registry.get_sample_value("cdc_staging_freshness_seconds", {"table": "a"}) == 10
    now[0] = 1030.0
    assert metrics.registry.get_sample_value("cdc_staging_freshness_seconds", {"table": "a"}) == 40
    assert (
        metrics.registry.get_sample_value("cdc_staging_newest_source_timestamp_seconds", {"table": "a"})
        == 990
    )


def test_endpoint_serves_the_registry_and_closes():
    metrics = IngestMetrics()
    metrics.set_lag("t", 0, 7)
    server = metrics.serve(0)
    try:
        body = urllib.request.urlopen(f"http://127.0.0.1:{server.port}/metrics", timeout=5).read().decode()
    finally:
        server.close()
    assert samples(body)[("cdc_ingest_consumer_lag", (("partition", "0"), ("topic", "t")))] == 7


@pytest.mark.integration
def test_a_running_ingester_reports_events_dead_letters_lag_and_freshness(lake):
    topic = f"{lake.topic_prefix}.s.items"
    ensure_topics({"bootstrap.servers": lake.settings.kafka.bootstrap_servers}, [topic], partitions=1)
    produce_items(lake, topic, 0, 300)
    send(lake, topic, [b"not json", b'{"op": "c"}'])  # two dead letters, offsets 300 and 301
    port = free_port()
    process = subprocess.Popen(
        [sys.executable, "-m", "ingest.cli", "run", "--metrics-port", str(port)],
        env=lake.env,
        cwd=REPO,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        found = {}
        deadline = time.monotonic() + 90
        while time.monotonic() < deadline:
            try:
                body = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5).read().decode()
            except OSError:
                time.sleep(0.5)
                continue
            found = samples(body)
            lag = found.get(("cdc_ingest_consumer_lag", (("partition", "0"), ("topic", topic))))
            if found.get(("cdc_ingest_events_total", ())) == 302 and lag == 0:
                break
            time.sleep(0.5)
        assert found.get(("cdc_ingest_events_total", ())) == 302, found
        # every series names the member (its run id), the same for all; it owns the topic's one partition
        (member,) = member_labels(body)
        assert member and member.startswith(socket.gethostname())
        assert found[("cdc_ingest_owned_partitions", ())] == 1
        assert found[("cdc_ingest_rows_total", (("table", "s__items"),))] == 300
        assert found[("cdc_ingest_dead_letters_total", (("topic", topic),))] == 2
        assert found[("cdc_ingest_consumer_lag", (("partition", "0"), ("topic", topic)))] == 0
        assert found[("cdc_ingest_schema_changes_total", (("change", "create"), ("table", "s__items")))] == 1
        assert found[("cdc_ingest_batch_events_count", ())] >= 1
        assert found[("cdc_ingest_batch_duration_seconds_count", ())] >= 1
        # produce_items stamps source.ts_ms = 1795241515000: freshness is now minus that
        freshness = found[("cdc_staging_freshness_seconds", (("table", "s__items"),))]
        assert abs(freshness - (time.time() - 1795241515)) < 30
        # lag rises with records not landed yet... and falls back to 0 once they are
        produce_items(lake, topic, 1000, 50)
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            found = samples(
                urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5).read().decode()
            )
            if found.get(("cdc_ingest_events_total", ())) == 352:
                break
            time.sleep(0.3)
        time.sleep(1.5)  # the lag is refreshed every second
        found = samples(urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5).read().decode())
        assert found[("cdc_ingest_events_total", ())] == 352
        assert found[("cdc_ingest_consumer_lag", (("partition", "0"), ("topic", topic)))] == 0
    finally:
        process.send_signal(signal.SIGTERM)
        _, stderr = process.communicate(timeout=60)
    assert process.returncode == 0, stderr
    assert re.search(rf"Prometheus metrics on http://127.0.0.1:{port}/metrics", stderr)


def test_columns_a_types_file_does_not_type_are_counted_per_table_until_it_types_them():
    metrics = IngestMetrics()
    metrics.observe_batch(1, 0.1, {"s__a": 1}, {}, {}, {}, {}, {"s__a": ["zip", "note"]})
    assert metrics.registry.get_sample_value("cdc_ingest_untyped_columns", {"table": "s__a"}) == 2
    metrics.observe_batch(1, 0.1, {"s__a": 1}, {}, {}, {}, {}, {"s__a": []})  # pulled again
    assert metrics.registry.get_sample_value("cdc_ingest_untyped_columns", {"table": "s__a"}) == 0
