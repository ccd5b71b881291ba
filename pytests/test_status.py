"""`ingest status`: from the lake and the broker, with and without a running ingester, never a secret."""

import json
import signal
import subprocess
import sys
import time

import pytest

from conftest import REPO, produce_items, send
from ingest.core.config import load_settings
from ingest.embedded.broker import ensure_topics
from ingest.ops.status import _describe_catalog

pytestmark = pytest.mark.integration

SECRET = "s3cr3t-Pa55word-for-the-test"


def status_json(lake, env=None) -> dict:
    result = subprocess.run(
        [sys.executable, "-m", "ingest.cli", "status", "--json"],
        env=env or lake.env,
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


def test_status_of_a_stopped_ingester_shows_lag_batch_freshness_and_failures(lake):
    topic = f"{lake.topic_prefix}.s.items"
    ensure_topics({"bootstrap.servers": lake.settings.kafka.bootstrap_servers}, [topic], partitions=1)
    produce_items(lake, topic, 0, 100)
    send(lake, topic, [b"not json"])  # offset 100: a dead letter
    lake.ingest("run", "--until-caught-up")
    produce_items(lake, topic, 1000, 20)  # on the broker, not landed: lag 20

    status = status_json(lake)
    assert status["ingester"]["running"] is False
    assert status["ingester"]["last_run"]["state"] == "stopped"
    assert status["ingester"]["last_run"]["exit_status"] == "stopped"
    [partition] = status["partitions"]
    assert (partition["topic"], partition["partition"]) == (topic, 0)
    assert (partition["landed_offset"], partition["high_watermark"], partition["lag"]) == (101, 121, 20)
    assert status["total_lag"] == 20
    assert status["last_batch"]["records"] == 101
    assert status["last_batch"]["change_rows"] == 100
    assert status["last_batch"]["dead_letters"] == 1
    [table] = status["tables"]
    assert table["table_name"] == "s__items" and table["rows"] == 100
    assert table["newest_source_ts"].startswith("2026-11-21T")  # produce_items' source.ts_ms
    assert table["freshness_s"] > 0
    assert status["dead_letters"]["total"] == 1 and status["dead_letters"]["by"] == {topic: 1}
    assert status["quarantine"]["total"] == 0
    assert status["dbt"]["last"] is None
    assert status["problems"] == []

    text = lake.ingest("status").stdout
    for expected in ("not running", topic, "s__items", "last batch #", "dead letters: 1", "none recorded"):
        assert expected in text, text


def test_status_sees_a_running_ingester_and_its_lag_at_zero(lake):
    topic = f"{lake.topic_prefix}.s.items"
    ensure_topics({"bootstrap.servers": lake.settings.kafka.bootstrap_servers}, [topic], partitions=1)
    produce_items(lake, topic, 0, 50)
    process = subprocess.Popen(
        [sys.executable, "-m", "ingest.cli", "run"],
        env=lake.env,
        cwd=REPO,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        deadline = time.monotonic() + 90
        status = {}
        while time.monotonic() < deadline:
            status = status_json(lake)
            if status["partitions"] and status["partitions"][0]["lag"] == 0:
                break
            time.sleep(1)
        assert status["ingester"]["running"] is True, status["ingester"]
        [run] = status["ingester"]["runs"]
        assert run["pid"] == process.pid and run["metrics_port"] > 0
        assert status["partitions"][0]["lag"] == 0
        assert "running" in lake.ingest("status").stdout
    finally:
        process.send_signal(signal.SIGTERM)
        _, stderr = process.communicate(timeout=60)
    assert process.returncode == 0, stderr
    assert status_json(lake)["ingester"]["running"] is False


def test_status_of_a_killed_ingester_says_it_is_gone(lake):
    topic = f"{lake.topic_prefix}.s.items"
    ensure_topics({"bootstrap.servers": lake.settings.kafka.bootstrap_servers}, [topic], partitions=1)
    produce_items(lake, topic, 0, 5)
    process = subprocess.Popen(
        [sys.executable, "-m", "ingest.cli", "run"], env=lake.env, cwd=REPO, stderr=subprocess.PIPE, text=True
    )
    deadline = time.monotonic() + 90
    while time.monotonic() < deadline and status_json(lake)["last_batch"] is None:
        time.sleep(1)
    process.kill()
    process.communicate(timeout=30)
    status = status_json(lake)
    assert status["ingester"]["running"] is False
    assert status["ingester"]["last_run"]["state"] == "gone (killed or crashed)"


def test_status_prints_no_secret(lake):
    topic = f"{lake.topic_prefix}.s.items"
    ensure_topics({"bootstrap.servers": lake.settings.kafka.bootstrap_servers}, [topic], partitions=1)
    produce_items(lake, topic, 0, 3)
    lake.ingest("run", "--until-caught-up")
    env = {**lake.env, "INGEST_KAFKA__SASL_USERNAME": "someone", "INGEST_KAFKA__SASL_PASSWORD": SECRET}
    for args in (["status"], ["status", "--json"]):
        result = subprocess.run(
            [sys.executable, "-m", "ingest.cli", *args], env=env, cwd=REPO, capture_output=True, text=True
        )
        assert result.returncode == 0, result.stderr
        assert SECRET not in result.stdout + result.stderr
        assert topic in result.stdout  # it did reach the broker and the lake
    # an external catalog's connection string is shown without its password
    settings = load_settings(
        "dev",
        project_dir=REPO,
        environ={"INGEST_LAKE__CATALOG": f"host=db user=lake password={SECRET} dbname=lake"},
    )
    described = _describe_catalog(settings)
    assert SECRET not in described and "host=db" in described
