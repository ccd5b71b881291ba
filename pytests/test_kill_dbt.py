"""kill -9 in the middle of `dbt build` and of `ingest maintain`: the next run succeeds and its results are
right. For dbt, "right" is the build's own reconciliation tests (each current-state model equals the latest
version per key recomputed in full from staging) and the serving tests; for maintenance, staging reads back
exactly as before and still holds every produced record exactly once."""

import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from conftest import (
    CORPUS,
    REPO,
    VARIANTS,
    assert_staging_exactly_once,
    dbt,
    ingest_command,
    read_topics,
    start_generator,
)
from ingest.devtools.corpus import produce, read_variant

pytestmark = pytest.mark.integration

SEED = int(os.environ.get("CRASH_TEST_SEED", "7"))


def generate_and_land(lake, events: int, seed: int, *args: str) -> None:
    generator = start_generator(lake, events, 0, "--seed", str(seed), *args)
    output, _ = generator.communicate(timeout=300)
    assert generator.returncode == 0, output
    lake.ingest("run", "--until-caught-up", timeout=300)


def kill_after(command: list[str], env: dict[str, str], seconds: float) -> int | None:
    """Start `command`, SIGKILL it after `seconds` (None if it finished before)."""
    process = subprocess.Popen(
        command, env=env, cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    try:
        return process.wait(seconds)
    except subprocess.TimeoutExpired:
        process.send_signal(signal.SIGKILL)
        process.wait()
        return None


def kill_when_logged(command: list[str], env: dict[str, str], marker: str, rng: random.Random) -> bool:
    """Start `command`; once a log line holds `marker`, SIGKILL it after 0-0.3 s. False if it ended first."""
    process = subprocess.Popen(
        command, env=env, cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True
    )
    assert process.stderr is not None
    for line in process.stderr:
        if marker in line:
            time.sleep(rng.uniform(0, 0.3))
            break
    killed = process.poll() is None
    process.send_signal(signal.SIGKILL)
    process.communicate()
    return killed


@pytest.mark.skipif(not VARIANTS, reason="corpus not present")
def test_kill_minus_nine_during_dbt_build_then_the_next_build_is_right(lake, tmp_path):
    # The recorded Debezium corpus (schemas on, precise decimals): the data the curated contracts are typed
    # for, with deletes, a PK change, TRUNCATE, TOAST and transactions for the incremental merges.
    produce(
        read_variant(CORPUS / "precise-schemas", topic_prefix=lake.topic_prefix), lake.settings.kafka.client
    )
    lake.ingest("run", "--until-caught-up")
    first = dbt(lake, tmp_path, "build")
    assert first.returncode == 0, first.stdout[-4000:]
    rng = random.Random(SEED)
    dbt_bin = str(Path(sys.executable).parent / "dbt")
    command = [
        dbt_bin,
        "build",
        "--target-path",
        str(tmp_path / "target"),
        "--log-path",
        str(tmp_path / "logs"),
    ]
    kills = 0
    for _ in range(3):  # kills land in parsing, model builds (incremental merges) and tests
        if kill_after(command, lake.env, rng.uniform(4, 30)) is None:
            kills += 1
    assert kills, "every build finished before its kill: nothing was tested"
    after = dbt(lake, tmp_path, "build")
    assert after.returncode == 0, after.stdout[-6000:]
    assert "reconcile_inventory__orders" in after.stdout and "ERROR=0" in after.stdout
    again = dbt(lake, tmp_path, "build")  # and the incremental state it left is sound for the next one
    assert again.returncode == 0, again.stdout[-6000:]


def staging_fingerprint(lake) -> list[tuple]:
    tables = [
        t
        for (t,) in lake.query(
            "select table_name from duckdb_tables() where database_name = 'lake' and schema_name = 'staging' "
            "and not starts_with(table_name, '_') order by 1"
        )
    ]
    return [
        (
            t,
            *lake.query(f'select count(*), sum(hash(to_json(t))) from lake.staging."{t}" as t')[0],
        )
        for t in tables
    ]


def test_kill_minus_nine_during_ingest_maintain_then_the_next_run_is_right(lake):
    # many small batches: many small files and snapshots for maintenance to merge and expire
    generator = start_generator(lake, 3000, 600, "--seed", "3")
    env = {**lake.env, "INGEST_BATCH__MAX_MS": "50"}
    subprocess.run(
        ingest_command("run", "--until-caught-up"), env=env, cwd=REPO, capture_output=True, timeout=300
    )
    generator.communicate(timeout=300)
    lake.ingest("run", "--until-caught-up")
    before = staging_fingerprint(lake)
    rng = random.Random(SEED)
    kills = 0
    for _ in range(3):
        # A fixed delay either hits start-up on a loaded machine or misses the whole run on a quiet one: kill
        # once the first step has reported (the work is under way), after a random part of a second.
        if kill_when_logged(ingest_command("maintain", "--older-than", "1s"), lake.env, "maintain: ", rng):
            kills += 1
        assert staging_fingerprint(lake) == before
    assert kills, "every maintenance run finished before its kill: nothing was tested"
    result = lake.ingest("maintain", "--older-than", "1s", timeout=600)
    assert result.returncode == 0
    assert staging_fingerprint(lake) == before
    generate_and_land(lake, 500, 4, "--after-lsn", "999999999999", "--after-tx-id", "99999999")
    assert_staging_exactly_once(lake, read_topics(lake))
