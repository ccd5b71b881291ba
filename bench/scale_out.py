"""Scale-out: 1, 2 and 3 `ingest run` members on one lake and one 6-partition topic, and the rebalance pause.

Throughput: a backlog of ~1 KB customers creates is produced to a 6-partition topic (the bench's producer;
each partition's end is taken from the delivery reports, since the dev broker's ListOffsets high watermark is
wrong), then N real `ingest run` processes are started at once as one consumer group on a fresh lake, and
timed until the lake's `staging._cdc_offsets` max(next_offset) reaches the end of every partition. Reported
per N: events/s landed (timed from the members' start, so the group join is included, and from the first
batch committed), per core (divided by min(N, cpu count)), the ratio against N=1 of the same run, and each
member's commit conflicts and retries (scraped from its Prometheus /metrics before it is stopped).

Rebalance pause: `ingest generate --partitions 6 --no-schemas` at a fixed rate, two members (the second
started once the first has landed a batch, and stopped only after it has landed one itself: a member that
leaves while another is mid-join wedges the dev broker's group); the second gets SIGTERM, and the pause is the
time from its exit to the last of its partitions (its last `_cdc_assignments` row) advancing again in
`_cdc_offsets`. Members use session.timeout.ms 2000 / heartbeat 400 as the tests do (the dev broker answers
a join after session.timeout.ms/2). Prints a table and writes bench/results/scale_out.json.

    .venv/bin/python bench/scale_out.py [--events 200000] [--runs 3] [--rate 500] [--pause-only]
"""

from __future__ import annotations

import argparse
import os
import re
import signal
import subprocess
import sys
import time
import urllib.request
import uuid
from pathlib import Path

import orjson
from common import (
    REPO,
    BenchEnv,
    bench_env,
    customer_payload,
    delete_topic,
    encode,
    producer,
    spread,
    write_result,
)

from ingest.core.config import load_settings
from ingest.embedded.broker import ensure_topics
from ingest.embedded.catalog import connect_lake
from ingest.embedded.processes import stop_process

PARTITIONS = 6
MEMBER_ENV = {
    "INGEST_KAFKA__SESSION_TIMEOUT_MS": "2000",
    "INGEST_KAFKA__HEARTBEAT_INTERVAL_MS": "400",
    "INGEST_METRICS_PORT": "0",
}
ACTIVE_WINDOW_S = 10  # a partition that landed within this many seconds before the exit counts as busy
METRICS_LINE = re.compile(r"Prometheus metrics on (http://\S+/metrics)")


class Lake:
    def __init__(self, env: dict[str, str]) -> None:
        self.env = env
        self.settings = load_settings("dev", project_dir=REPO, environ=env)

    def query(self, sql: str) -> list[tuple]:
        con = connect_lake(self.settings)
        try:
            return con.execute(sql).fetchall()
        except Exception:  # the bookkeeping tables do not exist before the first member created them
            return []
        finally:
            con.close()

    def positions(self) -> dict[tuple[str, int], int]:
        rows = self.query(
            'select topic, "partition", max(next_offset) from lake.staging._cdc_offsets group by all'
        )
        return {(t, p): o for t, p, o in rows}

    def runs_that_landed(self) -> set[str]:
        rows = self.query("select distinct run_id from lake.staging._cdc_batches where run_id is not null")
        return {r for (r,) in rows}


class Member:
    def __init__(self, env: dict[str, str], log: Path) -> None:
        self.log = log
        self.process = subprocess.Popen(
            [sys.executable, "-m", "ingest.cli", "run"],
            env={**env, **MEMBER_ENV},
            cwd=REPO,
            stdout=subprocess.DEVNULL,
            stderr=log.open("w"),
        )

    def metrics(self) -> dict[str, float]:
        match = METRICS_LINE.search(self.log.read_text())
        if not match:
            return {}
        text = urllib.request.urlopen(match.group(1), timeout=10).read().decode()
        totals: dict[str, float] = {}
        for line in text.splitlines():
            for name in ("cdc_ingest_commit_conflicts_total", "cdc_ingest_commit_retries_total"):
                if line.startswith(name):
                    totals[name] = totals.get(name, 0.0) + float(line.rsplit(" ", 1)[1])
        return totals

    def stop(self) -> float:
        """SIGTERM; returns the epoch time it exited."""
        stop_process(self.process, 60, kill_wait_s=30)
        return time.time()


def wait_for(condition, timeout_s: float, what: str) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():
        if time.monotonic() > deadline:
            raise TimeoutError(f"timed out waiting for {what}")
        time.sleep(0.2)


def produce_backlog(bootstrap: str, topic: str, events: int) -> dict[tuple[str, int], int]:
    """`events` customers creates spread over 6 partitions; returns each partition's end (from the
    delivery reports)."""
    ensure_topics({"bootstrap.servers": bootstrap}, [topic], partitions=PARTITIONS)
    p = producer(bootstrap)
    ends: dict[tuple[str, int], int] = {}

    def delivered(err, msg) -> None:
        if err is None:
            key = (msg.topic(), msg.partition())
            ends[key] = max(ends.get(key, 0), msg.offset() + 1)

    for i in range(events):
        key, value = encode(customer_payload(i, i), i, None)
        while True:
            try:
                p.produce(topic, key=key, value=value, partition=i % PARTITIONS, on_delivery=delivered)
                break
            except BufferError:
                p.poll(0.05)
        if i % 10_000 == 0:
            p.poll(0)
    p.flush(300)
    assert sum(ends.values()) == events, ends
    return ends


def throughput(bench: BenchEnv, members: int, events: int, logs: Path) -> dict:
    topic = f"scale{members}{uuid.uuid4().hex[:6]}.inventory.customers"
    ends = produce_backlog(bench.bootstrap, topic, events)
    lake = Lake(bench.lake_env(f"^{topic}$"))
    started = time.time()
    group = [Member(lake.env, logs / f"n{members}-{i}.log") for i in range(members)]
    try:
        wait_for(
            lambda: all(lake.positions().get(k, 0) >= e for k, e in ends.items()), 600, "every record landed"
        )
        ended = time.time()
        metrics = [m.metrics() for m in group]
    finally:
        for m in group:
            m.stop()
    (first,) = lake.query("select epoch(min(committed_at)) from lake.staging._cdc_batches")[0]
    per_run = lake.query(
        "select run_id, count(*), sum(records) from lake.staging._cdc_batches group by run_id order by 1"
    )
    delete_topic(bench.bootstrap, topic)
    rate = events / (ended - started)
    return {
        "landed_per_s": rate,
        "landed_from_first_commit_per_s": events / (ended - first),
        "per_core_per_s": rate / min(members, os.cpu_count() or 1),
        "conflicts": [m.get("cdc_ingest_commit_conflicts_total", 0.0) for m in metrics],
        "retries": [m.get("cdc_ingest_commit_retries_total", 0.0) for m in metrics],
        "batches_per_member": [int(n) for _, n, _ in per_run],
        "records_per_member": [int(r or 0) for _, _, r in per_run],
    }


def rebalance_pause(bench: BenchEnv, rate: float, logs: Path, run: int) -> dict:
    prefix = f"reb{run}{uuid.uuid4().hex[:6]}"
    lake = Lake(bench.lake_env(rf"^{prefix}\."))
    generator = subprocess.Popen(
        [sys.executable, "-m", "ingest.cli", "generate", "--events", "10000000", "--rate", str(rate),
         "--topic-prefix", prefix, "--partitions", str(PARTITIONS), "--no-schemas", "--seed", str(run)],
        env=lake.env, cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    first = second = None
    try:
        first = Member(lake.env, logs / f"reb{run}-a.log")
        wait_for(lambda: len(lake.runs_that_landed()) >= 1, 180, "the first member to land a batch")
        (run_a,) = lake.runs_that_landed()
        second = Member(lake.env, logs / f"reb{run}-b.log")
        wait_for(lambda: len(lake.runs_that_landed()) >= 2, 180, "the second member to land a batch")
        (run_b,) = lake.runs_that_landed() - {run_a}
        time.sleep(3)  # a steady state: the group settled, both landing
        rows = lake.query(
            "select partitions from lake.staging._cdc_assignments "
            f"where run_id = '{run_b}' order by at desc limit 1"
        )
        if rows:
            owned = [(t, p) for t, p in orjson.loads(rows[0][0])]
        else:  # no assignment row flushed yet: the partitions its batches advanced
            owned = lake.query(
                'select distinct o.topic, o."partition" from lake.staging._cdc_offsets o '
                f"join lake.staging._cdc_batches b using (batch_id) where b.run_id = '{run_b}'"
            )
        exited = second.stop()
        # Only partitions that were landing before the exit can show the pause: the generator's topics of
        # rare tables may see no event for a long time.
        active = set(
            lake.query(
                'select distinct topic, "partition" from lake.staging._cdc_offsets '
                f"where epoch(committed_at) between {exited - ACTIVE_WINDOW_S} and {exited}"
            )
        )
        owned = [tp for tp in owned if tuple(tp) in active]

        def advanced_since_exit() -> bool:
            times = {
                (t, p): at
                for t, p, at in lake.query(
                    'select topic, "partition", epoch(min(committed_at)) from lake.staging._cdc_offsets '
                    f"where epoch(committed_at) > {exited} group by all"
                )
            }
            return all(k in times for k in owned)

        try:
            wait_for(advanced_since_exit, 120, "the stopped member's partitions to land again")
        except TimeoutError as error:
            alive = "running" if first.process.poll() is None else f"exited {first.process.returncode}"
            raise TimeoutError(
                f"{error}; partitions {owned}; the first member ({alive}) logged:\n"
                + first.log.read_text()[-4000:]
            ) from None
        times = lake.query(
            'select topic, "partition", epoch(min(committed_at)) from lake.staging._cdc_offsets '
            f"where epoch(committed_at) > {exited} group by all"
        )
        pause = max(at for t, p, at in times if (t, p) in owned) - exited
    finally:
        for m in (second, first):
            if m is not None:
                m.stop()
        stop_process(generator, 120, signal.SIGINT, kill_wait_s=30)
    return {"pause_s": pause, "partitions_moved": len(owned)}


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--events", type=int, default=200_000)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--rate", type=float, default=500, help="events/s of the live stream (pause)")
    parser.add_argument("--pause-only", action="store_true", help="only the rebalance pause")
    args = parser.parse_args()
    results: dict[str, dict] = {}
    raw: dict[int, list[dict]] = {1: [], 2: [], 3: []}
    pauses: list[dict] = []
    with bench_env() as bench:
        logs = bench.state / "logs"
        logs.mkdir()
        for run in range(args.runs):
            for n in () if args.pause_only else (1, 2, 3):
                r = throughput(bench, n, args.events, logs)
                r["ratio"] = r["landed_per_s"] / (raw[1][-1]["landed_per_s"] if n > 1 else r["landed_per_s"])
                raw[n].append(r)
                print(
                    f"run {run + 1} N={n}: landed {r['landed_per_s']:,.0f}/s "
                    f"(from first commit {r['landed_from_first_commit_per_s']:,.0f}/s), "
                    f"{r['per_core_per_s']:,.0f}/s per core, ratio vs N=1 {r['ratio']:.2f}, "
                    f"conflicts {r['conflicts']}, retries {r['retries']}, batches {r['batches_per_member']}",
                    flush=True,
                )
            p = rebalance_pause(bench, args.rate, logs, run)
            pauses.append(p)
            print(f"run {run + 1} rebalance: {p['partitions_moved']} partitions, pause {p['pause_s']:.2f} s",
                  flush=True)  # fmt: skip
    for n, rs in raw.items() if not args.pause_only else ():
        results[f"N={n}"] = {
            name: spread([r[name] for r in rs])
            for name in ("landed_per_s", "landed_from_first_commit_per_s", "per_core_per_s", "ratio")
        } | {
            "conflicts_per_member": [r["conflicts"] for r in rs],
            "retries_per_member": [r["retries"] for r in rs],
            "batches_per_member": [r["batches_per_member"] for r in rs],
        }
    results["rebalance"] = {"pause_s": spread([p["pause_s"] for p in pauses]), "runs": pauses}
    write_result(
        "scale_out",
        f"python bench/scale_out.py --events {args.events} --runs {args.runs} --rate {args.rate:g}",
        results,
        events=args.events,
        runs=args.runs,
        partitions=PARTITIONS,
    )
    print()
    print(
        "| members | landed (events/s, from start) | from first commit | per core "
        "| vs N=1 (median, min-max) | conflicts per member | retries per member |"
    )
    print("|---|---|---|---|---|---|---|")
    for n in () if args.pause_only else (1, 2, 3):
        r = results[f"N={n}"]
        print(
            f"| {n} | {r['landed_per_s']['median']:,.0f} "
            f"| {r['landed_from_first_commit_per_s']['median']:,.0f} "
            f"| {r['per_core_per_s']['median']:,.0f} | {r['ratio']['median']:.2f} "
            f"({r['ratio']['min']:.2f}-{r['ratio']['max']:.2f}) | {r['conflicts_per_member']} "
            f"| {r['retries_per_member']} |"
        )
    pause = results["rebalance"]["pause_s"]
    print()
    print(
        f"rebalance pause (SIGTERM one of 2 members, {args.rate:g} events/s): median {pause['median']:.2f} s "
        f"(min {pause['min']:.2f}, max {pause['max']:.2f}) over {len(pauses)} runs"
    )


if __name__ == "__main__":
    main()
