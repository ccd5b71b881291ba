"""`ingest demo` as a user runs it: the real broker, catalog, ingester and dbt build, on a state directory and
a broker port of its own (never the developer's dev broker on 39092). It prints the marts, says where to look
next, stops what it started; a second run works on top of the first, and `--fresh` starts over."""

import os
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

from conftest import REPO, free_port
from ingest.embedded.broker import port_open
from ingest.embedded.catalog import EmbeddedCatalog

pytestmark = [pytest.mark.integration, pytest.mark.slow]

MARTS = ("current_stock", "customer_lifetime_value", "daily_sales", "orders", "orders_by_status")


@pytest.fixture(scope="module")
def demo_env():
    state_dir = Path(f"/tmp/cdc-demo-{os.getpid()}")  # short: the catalog's Unix socket lives under it
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("INGEST_")}
    env.update(
        {
            "INGEST_TARGET": "dev",
            "INGEST_LAKE__STATE_DIR": str(state_dir),
            "INGEST_LAKE__DATA_PATH": str(state_dir / "data"),
            "INGEST_KAFKA__BOOTSTRAP_SERVERS": f"127.0.0.1:{port}",
            "COLUMNS": "200",
        }
    )
    yield env, state_dir, port
    subprocess.run([sys.executable, "-m", "ingest.cli", "down"], env=env, cwd=REPO, capture_output=True)
    shutil.rmtree(state_dir, ignore_errors=True)


def run_demo(env, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "ingest.cli", "demo", "--events", "300", *args],
        env=env,
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=600,
    )


def count(env, table: str) -> int:
    result = subprocess.run(
        [sys.executable, "-m", "ingest.cli", "sql", f"select count(*) from {table}", "--json"],
        env=env,
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr
    return int(result.stdout.split(":")[1].strip(" }\n"))


def assert_everything_stopped(state_dir: Path, port: int) -> None:
    assert not port_open("127.0.0.1", port), "the demo left its broker running"
    assert not EmbeddedCatalog(state_dir).status().running, "the demo left its catalog running"


def down(env) -> None:
    subprocess.run([sys.executable, "-m", "ingest.cli", "down"], env=env, cwd=REPO, capture_output=True)


@dataclass
class FirstRun:
    result: subprocess.CompletedProcess[str]
    left_running: list[str]
    served: int
    staged: int


@pytest.fixture(scope="module")
def first_run(demo_env) -> FirstRun:
    """One `ingest demo` on an empty state directory, shared by the tests below (each demo run costs ~20 s):
    what it printed, whether it stopped what it started, and what it left in the lake. Each test then works
    on a lake holding one run's worth of the source: the first run's, or the fresh run's that replaced it."""
    env, state_dir, port = demo_env
    result = run_demo(env)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    running = {"broker": port_open("127.0.0.1", port), "catalog": EmbeddedCatalog(state_dir).status().running}
    served, staged = count(env, "serving.orders"), count(env, "staging.inventory__orders")
    down(env)
    return FirstRun(result, [part for part, up in running.items() if up], served, staged)


def test_demo_prints_marts_points_onwards_stops_and_fresh_starts_over(demo_env, first_run):
    env, state_dir, port = demo_env
    first = first_run.result
    for mart in MARTS:
        assert f"serving.{mart}:" in first.stdout, mart
    assert "Where to look next" in first.stdout
    assert "dbt docs" in first.stdout and "ingest status" in first.stdout
    assert "stopped what the demo started" in first.stdout
    assert not first_run.left_running, f"the demo left its {first_run.left_running} running"
    assert first_run.served > 0

    fresh = run_demo(env, "--fresh")
    assert fresh.returncode == 0, fresh.stdout[-3000:] + fresh.stderr[-3000:]
    assert "wiped the lake" in fresh.stdout
    assert_everything_stopped(state_dir, port)
    # an empty lake again, whatever ran since the first run: the first run's rows
    assert count(env, "staging.inventory__orders") == first_run.staged
    assert count(env, "serving.orders") == first_run.served
    down(env)


def test_a_second_demo_run_continues_the_source(demo_env, first_run):
    env, state_dir, port = demo_env
    staged = count(env, "staging.inventory__orders")
    down(env)
    # On top of the first: the source database goes on (its keys, sequences and log), so the new events
    # land (none is stale) and the dbt build's history tests hold across both runs.
    second = run_demo(env)
    assert second.returncode == 0, second.stdout[-3000:] + second.stderr[-3000:]
    assert "the source goes on from the earlier runs' 300 events" in second.stdout
    assert_everything_stopped(state_dir, port)  # before `ingest sql` starts the catalog again
    assert count(env, "staging.inventory__orders") > staged
    down(env)


def test_broker_start_precreates_the_inventory_topics_with_the_configured_partitions(tmp_path):
    """`ingest broker start`: Tansu would auto-create a topic with 4 partitions; the config names 3 here."""
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("INGEST_")}
    env.update({"INGEST_LAKE__STATE_DIR": str(tmp_path), "INGEST_KAFKA__TOPIC_PARTITIONS": "3"})

    def cli(*args: str) -> subprocess.CompletedProcess[str]:
        command = [sys.executable, "-m", "ingest.cli", "broker", *args, f"--port={port}"]
        return subprocess.run(command, env=env, cwd=REPO, capture_output=True, text=True, timeout=120)

    started = cli("start", "--topic-prefix=shop")
    try:
        assert started.returncode == 0, started.stderr
        assert "topics (3 partitions)" in started.stdout
        assert cli("status").returncode == 0
        from confluent_kafka.admin import AdminClient

        topics = AdminClient({"bootstrap.servers": f"127.0.0.1:{port}"}).list_topics(timeout=10).topics
        tables = ("addresses", "customers", "orders", "products", "products_on_hand")
        expected = [f"shop.inventory.{t}" for t in tables] + ["shop.transaction", "shop.message"]
        assert {t: len(topics[t].partitions) for t in expected if t in topics} == dict.fromkeys(expected, 3)
        assert cli("start", "--topic-prefix=shop").returncode == 0  # idempotent: running, topics exist
    finally:
        stopped = cli("stop")
    assert stopped.stdout.strip() == "broker stopped"
    assert cli("status").returncode == 1 and not port_open("127.0.0.1", port)
