"""Memory: the ingester's peak RSS while it drains a backlog.

Produces `--events` ~1 KB customers events (schemas off) to a one-partition topic first, then runs the real
CLI `ingest run --until-caught-up` as a child process and samples its RSS (psutil, every 50 ms, the child and
any process it starts) until it exits. Reports the peak, the RSS after start-up (first sample once the
first batch landed) and the drain rate. Goal: peak under 500 MB for a 5M-event backlog.

    .venv/bin/python bench/memory.py [--events 5000000] [--runs 3]
"""

from __future__ import annotations

import argparse
import contextlib
import subprocess
import time
import uuid

import psutil
from common import (
    BIN,
    REPO,
    bench_env,
    customer_payload,
    delete_topic,
    encode,
    produce_all,
    spread,
    write_result,
)


def events(n: int):
    template = [encode(customer_payload(i, i), i, None) for i in range(1000)]
    for i in range(n):
        yield template[i % 1000]


def rss(process: psutil.Process) -> int:
    total = 0
    for p in [process, *process.children(recursive=True)]:
        with contextlib.suppress(psutil.Error):
            total += p.memory_info().rss
    return total


def one_run(bench, n: int, run: int) -> dict[str, float]:
    topic = f"mem{run}{uuid.uuid4().hex[:6]}.inventory.customers"
    started = time.perf_counter()
    produce_all(bench.bootstrap, topic, events(n))
    print(f"run {run + 1}: produced {n:,} events in {time.perf_counter() - started:.0f} s", flush=True)
    env = bench.lake_env(rf"^{topic.replace('.', '[.]')}$")
    started = time.perf_counter()
    child = subprocess.Popen(
        [str(BIN / "ingest"), "run", "--until-caught-up"],
        env=env,
        cwd=REPO,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    process = psutil.Process(child.pid)
    samples: list[int] = []
    while child.poll() is None:
        try:
            samples.append(rss(process))
        except psutil.Error:
            break
        time.sleep(0.05)
    elapsed = time.perf_counter() - started
    if child.returncode != 0:
        raise RuntimeError(f"ingester exited with {child.returncode}")
    row = {
        "peak_rss_mb": max(samples) / 2**20,
        "median_rss_mb": sorted(samples)[len(samples) // 2] / 2**20,
        "drain_s": elapsed,
        "drain_per_s": n / elapsed,
    }
    print(
        f"run {run + 1}: peak RSS {row['peak_rss_mb']:.0f} MB (median {row['median_rss_mb']:.0f} MB), "
        f"drained in {elapsed:.0f} s ({row['drain_per_s']:,.0f}/s)",
        flush=True,
    )
    delete_topic(bench.bootstrap, topic)  # before the next run produces its backlog
    return row


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--events", type=int, default=5_000_000)
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()
    with bench_env() as bench:
        rows = [one_run(bench, args.events, run) for run in range(args.runs)]
    write_result(
        "memory",
        f"python bench/memory.py --events {args.events} --runs {args.runs}",
        {name: spread([r[name] for r in rows]) for name in rows[0]},
        events=args.events,
        runs=args.runs,
        goal="peak RSS < 500 MB while draining a 5M-event backlog",
    )


if __name__ == "__main__":
    main()
