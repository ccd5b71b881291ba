"""Several `ingest run` processes on one lake: they split the partitions and land every event exactly once.

Each scenario runs real `ingest run` processes against the real broker and lake while `ingest generate`
produces the inventory domain into 4-partition topics, then checks staging against every record the broker
holds: each (topic, partition, offset) exactly once, with its content (assert_staging_exactly_once).
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from conftest import (
    REPO,
    assert_staging_exactly_once,
    read_topics,
    start_generator,
    start_ingest,
    wait_for,
    warm_up,
)

pytestmark = pytest.mark.integration

# Short sessions so a stalled or killed member is noticed within seconds (Tansu answers a join after
# session.timeout.ms/2); small batches so many commits race.
MEMBER_ENV = {
    "INGEST_KAFKA__SESSION_TIMEOUT_MS": "2000",
    "INGEST_KAFKA__HEARTBEAT_INTERVAL_MS": "400",
    "INGEST_BATCH__MAX_EVENTS": "500",
    "INGEST_BATCH__MAX_MS": "100",
}


class Members:
    """The `ingest run` processes of one test, each logging to a file of its own."""

    def __init__(self, lake, log_dir: Path) -> None:
        self.lake = lake
        self.log_dir = log_dir
        self.processes: dict[str, subprocess.Popen] = {}
        self.generators: list[subprocess.Popen] = []

    def start(self, name: str, env: dict[str, str] | None = None) -> subprocess.Popen:
        log_file = (self.log_dir / f"{name}.log").open("w")
        process = start_ingest(self.lake, "run", env={**MEMBER_ENV, **(env or {})}, log_file=log_file)
        self.processes[name] = process
        return process

    def log(self, name: str) -> str:
        return (self.log_dir / f"{name}.log").read_text()

    def stop(self, name: str) -> None:
        process = self.processes[name]
        process.send_signal(signal.SIGTERM)
        assert process.wait(60) == 0, f"{name} did not stop cleanly:\n{self.log(name)[-3000:]}"

    def kill(self, name: str) -> None:
        self.processes[name].send_signal(signal.SIGKILL)
        self.processes[name].wait(30)

    def stop_all(self) -> None:
        for name, process in self.processes.items():
            if process.poll() is None:
                self.stop(name)

    def generate(self, rate: float, seed: int) -> subprocess.Popen:
        """Produce until `finish_generator`: the stream flows through every step of a scenario however
        slowly the members start on a loaded machine."""
        generator = start_generator(
            self.lake, 10_000_000, rate, "--partitions", "4", "--seed", str(seed), "--no-schemas"
        )
        self.generators.append(generator)
        return generator

    def close(self) -> None:
        for process in [*self.processes.values(), *self.generators]:
            if process.poll() is None:
                process.kill()
                process.wait(30)


@pytest.fixture
def members(lake, tmp_path):
    group = Members(lake, tmp_path)
    yield group
    group.close()


def landed_positions(lake) -> dict[tuple[str, int], int]:
    rows = lake.query(
        'select topic, "partition", max(next_offset) from lake.staging._cdc_offsets group by all'
    )
    return {(t, p): o for t, p, o in rows}


def wait_until_all_landed(lake, timeout_s: float = 120) -> list:
    """Every record on the broker is below the lake's position of its partition; returns the records."""
    records = read_topics(lake)
    ends: dict[tuple[str, int], int] = {}
    for record in records:
        key = (record.topic, record.partition)
        ends[key] = max(ends.get(key, 0), record.offset + 1)

    def landed() -> bool:
        positions = landed_positions(lake)
        return all(positions.get(key, 0) >= end for key, end in ends.items())

    wait_for(landed, timeout_s, "the members to land every record")
    return records


def finish_generator(generator: subprocess.Popen) -> None:
    assert generator.poll() is None, "the generator stopped before the scenario did"
    generator.send_signal(signal.SIGINT)  # it flushes and stops
    output, _ = generator.communicate(timeout=300)
    assert generator.returncode == 0, output


def runs_that_landed(lake) -> set[str]:
    return {
        r
        for (r,) in lake.query(
            "select distinct run_id from lake.staging._cdc_batches where run_id is not null"
        )
    }


def batch_ids_in_commit_order(lake) -> list[int]:
    return [
        b
        for (b,) in lake.query(
            "select batch_id from lake.staging._cdc_batches order by committed_at, batch_id"
        )
    ]


def test_two_ingesters_split_the_partitions_and_land_each_event_once(lake, members):
    warm_up(lake)
    generator = members.generate(1000, seed=5)
    members.start("a")
    time.sleep(3)  # as a rolling deploy or a second terminal does
    members.start("b")
    wait_for(lambda: len(runs_that_landed(lake)) >= 2, 60, "the second member to land a batch")
    time.sleep(2)
    finish_generator(generator)
    records = wait_until_all_landed(lake)
    # `ingest status` lists both members, and every partition has exactly one of them as its owner
    status = json.loads(lake.ingest("status", "--json").stdout)
    owned = [tuple(p) for m in status["members"] for p in m["partitions"]]
    assert len(status["members"]) == 2 and all(m["partitions"] for m in status["members"])
    assert len(owned) == len(set(owned)) == len(status["partitions"])
    assert all(p["owner"] is not None for p in status["partitions"])
    members.stop_all()
    counts = assert_staging_exactly_once(lake, records)
    assert sum(counts.values()) > 3_000
    assert len(runs_that_landed(lake)) >= 2, "the second member never landed a batch"
    # one lake-wide sequence of batch ids, growing in commit order across both members
    ids = batch_ids_in_commit_order(lake)
    assert ids == sorted(ids) and len(ids) == len(set(ids))
    assert "revoked" in members.log("a") or "revoked" in members.log("b")


def test_rolling_deploy_with_a_kill_lands_each_event_once(lake, members):
    """A second instance starts before the first stops, a third joins, one is SIGKILLed, a fourth replaces
    it, all while the generator produces."""
    warm_up(lake)
    generator = members.generate(1000, seed=6)
    members.start("first")
    time.sleep(2)
    members.start("second")
    # As a rolling update waits for the new instance to be ready: here, to have joined and landed (the dev
    # broker wedges a group when a member leaves while another is in the middle of joining).
    wait_for(lambda: len(runs_that_landed(lake)) >= 2, 60, "the second member to land a batch")
    members.stop("first")  # hands its partitions over
    members.start("third")
    wait_for(lambda: len(runs_that_landed(lake)) >= 3, 60, "the third member to land a batch")
    members.kill("second")  # no goodbye: its partitions move once its session times out
    members.start("fourth")
    wait_for(lambda: len(runs_that_landed(lake)) >= 4, 60, "the fourth member to land a batch")
    finish_generator(generator)
    records = wait_until_all_landed(lake, timeout_s=180)
    members.stop_all()
    counts = assert_staging_exactly_once(lake, records)
    assert sum(counts.values()) > 5_000


def test_a_paused_member_resumed_after_its_partitions_moved_lands_nothing_twice(lake, members):
    """SIGSTOP past the session timeout: the other member takes the partitions and lands them; after SIGCONT
    the stale member holds batches of partitions it lost, which the lake's fence refuses."""
    warm_up(lake)
    generator = members.generate(1000, seed=7)
    zombie = members.start("zombie")
    time.sleep(2)
    members.start("survivor")
    wait_for(lambda: len(runs_that_landed(lake)) >= 2, 60, "both members to land a batch")
    zombie.send_signal(signal.SIGSTOP)
    try:
        before = landed_positions(lake)
        # the survivor is given the zombie's partitions and lands beyond where the zombie stopped
        wait_for(
            lambda: "lost" in members.log("survivor") or _grew_everywhere(before, landed_positions(lake)),
            60,
            "the survivor to take over the paused member's partitions",
        )
    finally:
        zombie.send_signal(signal.SIGCONT)
    time.sleep(3)  # the resumed member finds out, drops what it held and rejoins
    finish_generator(generator)
    records = wait_until_all_landed(lake, timeout_s=180)
    members.stop_all()
    assert_staging_exactly_once(lake, records)
    assert "lost" in members.log("zombie") or "landed by another member" in members.log("zombie")


def _grew_everywhere(before: dict[tuple[str, int], int], after: dict[tuple[str, int], int]) -> bool:
    return bool(before) and all(after.get(key, 0) > offset for key, offset in before.items())


def test_an_ingester_of_another_group_is_refused(lake):
    lake.ingest("run", "--until-caught-up")
    lake.env["INGEST_GROUP_ID"] = lake.topic_prefix + "-another-group"
    result = lake.ingest("run", "--until-caught-up", check=False)
    assert result.returncode == 2
    error_lines = [line for line in result.stderr.splitlines() if "ERROR" in line]
    assert len(error_lines) == 1 and "owned by consumer group" in error_lines[0], result.stderr
    assert f"{lake.topic_prefix}-group" in error_lines[0]
    assert "Traceback" not in result.stderr


def test_two_processes_starting_the_embedded_catalog_at_once_both_work(tmp_path):
    """One starts the catalog, the other waits for it and uses it (the start takes a lock file)."""
    state_dir = Path(f"/tmp/cdc-cat-{os.getpid()}")  # a short path: the catalog's socket lives here
    env = {k: v for k, v in os.environ.items() if not k.startswith("INGEST_")}
    env.update(
        {
            "INGEST_TARGET": "dev",
            "INGEST_KAFKA__EMBEDDED": "false",
            "INGEST_LAKE__STATE_DIR": str(state_dir),
            "INGEST_LAKE__DATA_PATH": str(tmp_path / "data"),
        }
    )
    command = [sys.executable, "-m", "ingest.cli", "sql", "select 42 as answer"]
    try:
        both = [
            subprocess.Popen(
                command, env=env, cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
            )
            for _ in range(2)
        ]
        results = [(p.wait(180), *p.communicate()) for p in both]
        for code, out, err in results:
            assert code == 0 and "42" in out, err[-3000:]
    finally:
        subprocess.run(
            [sys.executable, "-m", "ingest.cli", "catalog", "stop"],
            env=env,
            cwd=REPO,
            capture_output=True,
            timeout=60,
        )
        subprocess.run(["rm", "-rf", str(state_dir)], check=False)
