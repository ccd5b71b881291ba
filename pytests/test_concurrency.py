"""Concurrency: the ingester landing a generator's stream, `dbt build` every 10 s and a loop of analyst
queries (DuckDB connections to the lake and `ingest sql`), all at once. No failures anywhere; at the end
staging holds every produced event exactly once and a final `dbt build` (reconciliation tests
included) passes.

`make test` runs it for 60 s; `make soak` for 10 minutes (CONCURRENCY_SOAK_S)."""

import os
import random
import re
import signal
import subprocess
import threading
import time
from dataclasses import dataclass, field

import pytest

from conftest import (
    assert_staging_exactly_once,
    dbt,
    ingest_command,
    read_topics,
    start_generator,
    start_ingest,
    wait_for,
)

pytestmark = pytest.mark.integration

BUILD_EVERY_S = 10
RATE = float(os.environ.get("CONCURRENCY_RATE", "400"))  # change events/s (~2.3 Kafka records each)

ANALYST_QUERIES = [
    "select count(*) from lake.staging.inventory__orders",
    "select _kafka_partition, max(_kafka_offset) from lake.staging.inventory__orders group by all",
    "select count(*), sum(quantity) from lake.curated.inventory__products_on_hand",
    "select status, count(*) from lake.serving.orders group by all",
    "select * from lake.serving.daily_sales order by 1 desc limit 5",
    "select count(*) from lake.curated.inventory__customers__history where _is_current",
    "select topic, max(next_offset) from lake.staging._cdc_offsets group by all",
]


def failed_tests(dbt_output: str) -> list[str]:
    return re.findall(r"(?:Failure|Error) in \S+ (\S+)", dbt_output)


@dataclass
class Tally:
    ok: int = 0
    failures: list[str] = field(default_factory=list)
    seconds: list[float] = field(default_factory=list)


def analyst_loop(lake, stop: threading.Event, curated_ready: threading.Event, tally: Tally) -> None:
    rng = random.Random(3)
    con = lake.connect()
    try:
        while not stop.is_set():
            queries = ANALYST_QUERIES if curated_ready.is_set() else ANALYST_QUERIES[:2]
            query = rng.choice(queries)
            started = time.monotonic()
            try:
                if rng.random() < 0.1:  # now and then the way an analyst at a shell does it
                    result = subprocess.run(
                        ingest_command("sql", "--json", query),
                        env=lake.env,
                        capture_output=True,
                        text=True,
                        timeout=120,
                    )
                    assert result.returncode == 0, result.stderr[-2000:]
                else:
                    con.execute(query).fetchall()
                tally.ok += 1
                tally.seconds.append(time.monotonic() - started)
            except Exception as error:
                tally.failures.append(f"{query}: {str(error)[:1000]}")
            stop.wait(0.2)
    finally:
        con.close()


def build_loop(lake, tmp_path, stop: threading.Event, curated_ready: threading.Event, tally: Tally) -> None:
    while not stop.is_set():
        started = time.monotonic()
        result = dbt(lake, tmp_path, "build")
        if result.returncode == 0:
            tally.ok += 1
            curated_ready.set()
        else:
            tally.failures.append(result.stdout[-4000:])
        tally.seconds.append(time.monotonic() - started)
        stop.wait(max(0.0, started + BUILD_EVERY_S - time.monotonic()))


def orders_landed(lake) -> bool:
    tables = lake.query(
        "select table_name from duckdb_tables() where database_name = 'lake' and schema_name = 'staging'"
    )
    return ("inventory__orders",) in tables


def run_together(lake, tmp_path, duration_s: float) -> None:
    events = int(RATE * duration_s * 2)  # more than it can produce in the time: the stream never pauses
    log_path = tmp_path / "ingest.log"
    stop = threading.Event()
    curated_ready = threading.Event()
    builds, queries = Tally(), Tally()
    generator = start_generator(lake, events, RATE, "--partitions", "2", "--seed", "21")
    with open(log_path, "w") as log_file:
        ingester = start_ingest(lake, "run", log_file=log_file)
        threads = [
            threading.Thread(target=build_loop, args=(lake, tmp_path, stop, curated_ready, builds)),
            threading.Thread(target=analyst_loop, args=(lake, stop, curated_ready, queries)),
        ]
        try:
            # the analysts start once every staging table they query is committed (the first batch may lack
            # some; the ingester logs "created" inside the batch's transaction, before other readers see it)
            wait_for(lambda: orders_landed(lake), 180, "staging.inventory__orders")
            for thread in threads:
                thread.start()
            time.sleep(duration_s)
            assert ingester.poll() is None, f"the ingester died:\n{log_path.read_text()[-3000:]}"
            assert generator.poll() is None, "the generator stopped before the end: raise the event count"
        finally:
            stop.set()
            generator.send_signal(signal.SIGINT)  # Ctrl-C: it flushes what it produced and stops
            generator.communicate(timeout=120)
            for thread in threads:
                thread.join(900)
            ingester.terminate()
            ingester.wait(120)
    log = log_path.read_text()
    assert ingester.returncode == 0, log[-3000:]
    lake.ingest("run", "--until-caught-up", timeout=600)
    counts = assert_staging_exactly_once(lake, read_topics(lake))
    final = dbt(lake, tmp_path, "build")
    landed = lake.query("select count(*), max(batch_id) from lake.staging._cdc_offsets")[0]
    print(
        f"{duration_s:.0f} s: {builds.ok} dbt builds ok, {len(builds.failures)} failed "
        f"(median {sorted(builds.seconds)[len(builds.seconds) // 2] if builds.seconds else 0:.1f} s); "
        f"{queries.ok} analyst queries ok, {len(queries.failures)} failed "
        f"(max {max(queries.seconds, default=0):.2f} s); {landed[1]} batches; landed exactly once: {counts}; "
        f"commit retries logged: {log.count('retrying in')}"
    )
    for failure in builds.failures:
        print("dbt build failed:", failed_tests(failure) or failure[-500:])
    for failure in queries.failures[:5]:
        print("query failed:", failure)
    assert not queries.failures, queries.failures[:5]
    assert builds.ok + len(builds.failures) >= 1, "no dbt build ran during the stream"
    assert final.returncode == 0, final.stdout[-6000:]
    assert "PASS=" in final.stdout
    # Every build during the stream passes too: the serving marts keep one watermark per input (they used to
    # keep one over order and product batch ids, which the two history models read at different moments,
    # and orders_match_order_history failed; docs/reliability.md, "Concurrency").
    assert not builds.failures, failed_tests(builds.failures[0]) or builds.failures[0][-3000:]


def test_ingester_dbt_and_analysts_together_for_a_minute(lake, tmp_path):
    run_together(lake, tmp_path, float(os.environ.get("CONCURRENCY_S", "60")))


@pytest.mark.soak
@pytest.mark.timeout(3600)
def test_ingester_dbt_and_analysts_together_for_ten_minutes(lake, tmp_path):
    run_together(lake, tmp_path, float(os.environ.get("CONCURRENCY_SOAK_S", "600")))
