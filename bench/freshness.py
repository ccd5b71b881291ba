"""Freshness: produce -> visible in staging, p50 / p99, at fixed produce rates sustained for a while.

Per run and rate: a fresh lake and one-partition topic; the real CLI `ingest run` (a child process) consumes
it continuously; a producer process sends ~1 KB customers events (schemas off) at a fixed rate (paced every
5 ms) for `--duration` seconds. The Kafka record timestamp is the produce time (CreateTime, set by the
producer at `produce()`). This process polls the lake on its own DuckDB connection every `--poll-ms` and
stamps each newly visible row with the poll's time: latency = visible - produced (the poll interval adds up
to `--poll-ms` to every figure, ~half of it on average). The parts: the ingester's log gives each batch's
landing (DuckLake commit) time; the flush policy (`batch.max_events` / `batch.max_ms`) bounds the wait of
the first event of a batch.

    .venv/bin/python bench/freshness.py [--rates 1000,10000] [--duration 60] [--runs 3] [--max-ms 500]
"""

from __future__ import annotations

import argparse
import multiprocessing
import re
import statistics
import subprocess
import time
import uuid

from common import (
    BIN,
    REPO,
    BenchEnv,
    bench_env,
    customer_payload,
    encode,
    ensure_topics,
    producer,
    spread,
    write_result,
)

LANDED = re.compile(r"batch \d+ landed: (\d+) records .* in (\d+) ms")


def produce_at_rate(bootstrap: str, topic: str, rate: int, duration: float, ready) -> None:
    values = [encode(customer_payload(i, i), i, None) for i in range(1000)]
    p = producer(bootstrap, **{"linger.ms": 2})
    ready.wait()
    started = time.monotonic()
    sent = 0
    total = int(rate * duration)
    while sent < total:
        due = min(total, int((time.monotonic() - started) * rate))
        while sent < due:
            key, value = values[sent % 1000]
            try:
                p.produce(topic, key=key, value=value)
            except BufferError:
                p.poll(0.01)
                continue
            sent += 1
        p.poll(0)
        time.sleep(0.005)
    p.flush(60)


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def one_run(bench: BenchEnv, rate: int, duration: float, poll_ms: int, max_ms: int, run: int) -> dict:
    from ingest.core.config import load_settings
    from ingest.embedded.catalog import connect_lake

    topic = f"fresh{run}{uuid.uuid4().hex[:6]}.inventory.customers"
    ensure_topics({"bootstrap.servers": bench.bootstrap}, [topic], partitions=1)
    env = bench.lake_env(rf"^{topic.replace('.', '[.]')}$", INGEST_BATCH__MAX_MS=str(max_ms))
    log_path = bench.state / f"{topic}.log"
    with log_path.open("w") as log:
        child = subprocess.Popen([str(BIN / "ingest"), "run"], env=env, cwd=REPO, stdout=log, stderr=log)
    ready = multiprocessing.Event()
    producer_process = multiprocessing.Process(
        target=produce_at_rate, args=(bench.bootstrap, topic, rate, duration, ready)
    )
    producer_process.start()
    con = None
    try:
        # Wait for the ingester to have created its bookkeeping tables, then start producing.
        settings = load_settings("dev", project_dir=REPO, environ=env)
        deadline = time.monotonic() + 120
        while "assigned 1 partitions" not in log_path.read_text():
            if time.monotonic() > deadline or child.poll() is not None:
                raise RuntimeError(f"ingester did not start:\n{log_path.read_text()[-3000:]}")
            time.sleep(0.2)
        con = connect_lake(settings)
        ready.set()
        total = int(rate * duration)
        latencies: list[float] = []
        last_offset = -1
        table_ready = False
        deadline = time.monotonic() + duration + 120
        while len(latencies) < total and time.monotonic() < deadline:
            time.sleep(poll_ms / 1000)
            if not table_ready:
                table_ready = bool(
                    con.execute(
                        "select 1 from duckdb_tables() where database_name = 'lake' "
                        "and table_name = 'inventory__customers'"
                    ).fetchall()
                )
                if not table_ready:
                    continue
            rows = con.execute(
                "select _kafka_offset, epoch_ms(_kafka_timestamp) from lake.staging.inventory__customers "
                "where _kafka_offset > ?",
                [last_offset],
            ).fetchall()
            seen_ms = time.time() * 1000
            for offset, produced_ms in rows:
                latencies.append(seen_ms - produced_ms)
                last_offset = max(last_offset, offset)
        producer_process.join(timeout=60)
    finally:
        if con is not None:
            con.close()
        child.terminate()
        child.wait(timeout=60)
        if producer_process.is_alive():
            producer_process.terminate()
    if len(latencies) < total:
        raise RuntimeError(f"only {len(latencies)} of {total} events became visible")
    batches = [(int(n), int(ms)) for n, ms in LANDED.findall(log_path.read_text())]
    land_ms = [ms for _, ms in batches]
    row = {
        "p50_ms": percentile(latencies, 0.50),
        "p99_ms": percentile(latencies, 0.99),
        "max_ms": max(latencies),
        "events": len(latencies),
        "batches": len(batches),
        "mean_batch_events": statistics.mean(n for n, _ in batches),
        "land_p50_ms": percentile(land_ms, 0.5),
        "land_p99_ms": percentile(land_ms, 0.99),
    }
    print(
        f"{rate}/s run {run + 1}: p50 {row['p50_ms']:.0f} ms, p99 {row['p99_ms']:.0f} ms, max "
        f"{row['max_ms']:.0f} ms; {row['batches']} batches of ~{row['mean_batch_events']:.0f} events, "
        f"landing p50 {row['land_p50_ms']} ms p99 {row['land_p99_ms']} ms",
        flush=True,
    )
    return row


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--rates", default="1000,10000")
    parser.add_argument("--duration", type=float, default=60)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--poll-ms", type=int, default=50)
    parser.add_argument("--max-ms", type=int, default=500, help="the ingester's batch.max_ms")
    args = parser.parse_args()
    rates = [int(r) for r in args.rates.split(",")]
    results: dict[str, dict] = {}
    with bench_env() as bench:
        for rate in rates:
            rows = [
                one_run(bench, rate, args.duration, args.poll_ms, args.max_ms, run)
                for run in range(args.runs)
            ]
            results[f"{rate}/s"] = {name: spread([r[name] for r in rows]) for name in rows[0]}
    write_result(
        "freshness",
        f"python bench/freshness.py --rates {args.rates} --duration {args.duration:g} --runs {args.runs} "
        f"--poll-ms {args.poll_ms} --max-ms {args.max_ms}",
        results,
        duration_s=args.duration,
        poll_ms=args.poll_ms,
        batch_max_ms=args.max_ms,
        goal="p99 < 1 s at 10,000 events/s",
    )


if __name__ == "__main__":
    main()
