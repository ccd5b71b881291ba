"""Continuous mode: `ingest run --dbt-build-every` builds serving while ingesting, one build at a time."""

import itertools
import signal
import subprocess
import sys
import time
from datetime import UTC, datetime

import orjson
import pytest

from conftest import REPO
from ingest.core.config import load_settings
from ingest.devtools import generator as gen
from ingest.ops.dbt_runner import ContinuousBuilds, parse_interval


def test_intervals_parse_with_units():
    assert parse_interval("30s") == 30
    assert parse_interval("1.5s") == 1.5
    assert parse_interval("5m") == 300
    assert parse_interval("1h") == 3600
    assert parse_interval("12") == 12
    for bad in ("", "0s", "soon", "-5s", "5 parsecs"):
        with pytest.raises(ValueError):
            parse_interval(bad)


def test_the_runner_never_starts_a_build_while_one_runs_and_skips_when_nothing_landed(tmp_path):
    calls = tmp_path / "calls"
    fake_dbt = tmp_path / "dbt"
    script = (
        f"#!/bin/sh\necho start $(date +%s.%N) >> {calls}\nsleep 0.4\necho end $(date +%s.%N) >> {calls}\n"
    )
    fake_dbt.write_text(script)
    fake_dbt.chmod(0o755)
    settings = load_settings("dev", project_dir=REPO, environ={"INGEST_LAKE__STATE_DIR": str(tmp_path)})
    runner = ContinuousBuilds(settings, interval=0.05, select=["+orders"], dbt_executable=str(fake_dbt))
    assert runner.command()[:6] == [str(fake_dbt), "build", "--target", "dev", "--select", "+orders"]
    runner.start()
    for _ in range(4):  # a batch lands every 0.3 s, more often than a build takes
        time.sleep(0.3)
        runner.notify_landed()
    last_landed = time.time()
    time.sleep(2.0)  # nothing lands any more: no build after the one already due
    runner.stop()
    lines = calls.read_text().split()
    events = list(zip(lines[::2], map(float, lines[1::2]), strict=True))
    kinds = [kind for kind, _ in events]
    assert kinds == ["start", "end"] * (len(kinds) // 2), "two builds ran at once"
    times = [t for _, t in events]
    assert times == sorted(times), "a build started before the previous one ended"
    # 1.2 s of landing at 0.4 s per build: 2 to 4 builds (the first one at start), never one per batch idle
    assert 2 <= len(runner.results) <= 4 and len(kinds) // 2 == len(runner.results)
    # the build due at the last landing may start once the running one ends; none after that
    assert max(t for kind, t in events if kind == "start") < last_landed + 1.0, "built with nothing landed"
    # the fake writes no run_results.json: each build is logged and counted as an error
    assert {r.status for r in runner.results} == {"error"}


def source_ts(record) -> datetime:
    source = orjson.loads(record.value)["payload"]["source"]
    return datetime.fromtimestamp(source["ts_us"] / 1e6, UTC)


def wait_for(condition, timeout: float, what: str):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        time.sleep(2)
    raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what}")


@pytest.mark.integration
@pytest.mark.slow
def test_continuous_builds_bring_new_events_to_serving_and_never_overlap(lake):
    source = gen.InventoryGenerator(
        gen.GeneratorConfig(topic_prefix=lake.topic_prefix, events=300, seed=11), clock=gen.wall_clock_us
    )
    records = iter(source)
    # The snapshot, then some changes. The generator's first transaction can carry the snapshot's LSN and,
    # with a wall clock, a commit time up to 60 ms before the snapshot's: pause so times stay in order.
    first = list(itertools.islice(records, sum(len(rows) for rows in gen.seed_rows().values())))
    time.sleep(0.2)
    first += list(itertools.islice(records, 150))
    gen.produce_records(first, lake.settings.kafka.client, source.topics, 1)
    process = subprocess.Popen(
        [sys.executable, "-m", "ingest.cli", "run", "--dbt-build-every", "3s"],
        env=lake.env,
        cwd=REPO,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )

    def builds():
        try:
            return lake.query(
                "select started_at, finished_at, status, trigger, command from lake.staging._cdc_dbt_builds "
                "order by started_at"
            )
        except Exception:  # not created before the first build ends
            return []

    try:
        wait_for(lambda: any(b[2] == "success" for b in builds()), 600, "a successful continuous build")
        assert lake.query("select count(*) from lake.serving.orders")[0][0] > 0
        # events produced now become visible in serving through the next builds, with no scheduler
        rest = list(records)
        orders_topic = f"{lake.topic_prefix}.inventory.orders"
        newest = max(source_ts(r) for r in rest if r.topic == orders_topic and r.value is not None)
        gen.produce_records(rest, lake.settings.kafka.client, source.topics, 1)
        caught_up = (
            f"select max(last_changed_at) >= '{newest.isoformat()}'::timestamptz from lake.serving.orders"
        )
        wait_for(lambda: lake.query(caught_up)[0][0], 600, f"serving.orders to reach {newest}")
    finally:
        process.send_signal(signal.SIGTERM)
        _, stderr = process.communicate(timeout=300)
    assert process.returncode == 0, stderr[-4000:]
    assert "dbt build #1" in stderr
    recorded = builds()
    assert len(recorded) >= 2
    assert {(b[3], b[4]) for b in recorded} == {("continuous", "build")}
    for earlier, later in itertools.pairwise(recorded):
        assert later[0] >= earlier[1], f"builds overlap: {earlier} and {later}"
    status = lake.ingest("status", "--json", "--no-broker").stdout
    assert '"trigger": "continuous"' in status
