"""Produce-to-serving latency of continuous mode (`ingest run --dbt-build-every`), against produce-to-staging.

A wall-clock generator produces inventory change events at a steady rate into an embedded broker; the real
`ingest run --dbt-build-every <interval>` lands them and runs `dbt build`s in the background. A poller reads
the newest source commit time visible in `staging.inventory__orders` (baseline: ingestion only) and in the
serving mart `serving.orders` (`last_changed_at`), every 0.25 s. An order event produced at time p with
source time s is visible at the first poll whose newest time is >= s; its latency is that poll's time - p.
Prints p50/p90/p99/max for both layers and their ratio, the builds that ran, and writes
bench/results/serving_latency.json.

    .venv/bin/python bench/serving_latency.py [--interval 10s] [--rate 5] [--duration 180] [--select +orders]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import orjson

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from ingest.core.config import load_settings  # noqa: E402
from ingest.devtools import generator as gen  # noqa: E402
from ingest.embedded.broker import EmbeddedBroker  # noqa: E402
from ingest.embedded.catalog import EmbeddedCatalog, connect_lake  # noqa: E402

POLL_S = 0.25


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def summary(values: list[float]) -> dict[str, float]:
    return {
        "events": len(values),
        "p50": percentile(values, 0.50),
        "p90": percentile(values, 0.90),
        "p99": percentile(values, 0.99),
        "max": max(values),
        "mean": statistics.fmean(values),
    }


def source_seconds(record: gen.Record) -> float:
    return orjson.loads(record.value)["payload"]["source"]["ts_us"] / 1e6


class Poller(threading.Thread):
    """Newest visible source time in staging and in serving, sampled every POLL_S seconds."""

    def __init__(self, settings) -> None:
        super().__init__(daemon=True)
        self.settings = settings
        self.samples: list[tuple[float, float | None, float | None]] = []
        self.stop = threading.Event()

    def run(self) -> None:
        con = connect_lake(self.settings)
        try:
            while not self.stop.wait(POLL_S):
                self.samples.append(
                    (
                        time.time(),
                        self._newest(con, "staging.inventory__orders", "_cdc_source_ts"),
                        self._newest(con, "serving.orders", "last_changed_at"),
                    )
                )
        finally:
            con.close()

    @staticmethod
    def _newest(con, table: str, column: str) -> float | None:
        try:
            value = con.execute(f"select max({column}) from lake.{table}").fetchone()[0]
        except Exception:
            return None  # not built yet
        return None if value is None else value.timestamp()

    def visible_at(self, source_ts: float, layer: int) -> float | None:
        for sample in self.samples:
            if sample[layer] is not None and sample[layer] >= source_ts:
                return sample[0]
        return None


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--interval", default="10s", help="--dbt-build-every")
    parser.add_argument("--select", default="", help="--select of the continuous builds (default: all)")
    parser.add_argument("--rate", type=float, default=5.0, help="change events per second")
    parser.add_argument("--duration", type=float, default=180.0, help="seconds of production measured")
    parser.add_argument("--drain-timeout", type=float, default=600.0)
    # Seed 1 (and about half of all seeds) makes the generator's first transaction touch a snapshot row at
    # the snapshot's own LSN, which the curated model and its reconciliation test order differently.
    parser.add_argument("--seed", type=int, default=2)
    args = parser.parse_args()
    # SIGTERM (and SIGINT, which a background job ignores) stop the run through the cleanup below.
    signal.signal(signal.SIGTERM, signal.default_int_handler)

    state = Path(tempfile.mkdtemp(prefix="cdc-lat-", dir="/tmp"))
    catalog = EmbeddedCatalog(state)
    broker = EmbeddedBroker(state, free_port())
    catalog.start()
    broker.start()
    prefix = f"lat{uuid.uuid4().hex[:6]}"
    env = {k: v for k, v in os.environ.items() if not k.startswith("INGEST_")}
    env.update(
        {
            "INGEST_TARGET": "dev",
            "INGEST_TOPICS": rf"^{prefix}\.",
            "INGEST_GROUP_ID": f"{prefix}-group",
            "INGEST_KAFKA__EMBEDDED": "false",
            "INGEST_KAFKA__BOOTSTRAP_SERVERS": broker.bootstrap_servers,
            "INGEST_LAKE__STATE_DIR": str(state),
            "INGEST_LAKE__CATALOG_DATABASE": "bench_latency",
            "INGEST_LAKE__DATA_PATH": str(state / "data"),
            "INGEST_METRICS_PORT": "0",
        }
    )
    settings = load_settings("dev", project_dir=REPO, environ=env)
    source = gen.InventoryGenerator(
        gen.GeneratorConfig(topic_prefix=prefix, events=10_000_000, seed=args.seed), clock=gen.wall_clock_us
    )
    records = iter(source)
    orders_topic = f"{prefix}.inventory.orders"
    command = [sys.executable, "-m", "ingest.cli", "run", "--dbt-build-every", args.interval]
    if args.select:
        command += ["--select", args.select]
    ingester = None
    poller = Poller(settings)
    produced: list[tuple[float, float]] = []  # (source ts, produce time) of order events
    try:
        # Warm-up: the snapshot and some changes, then the first (full) build, outside the measurement.
        # (The generator's first transaction can carry the snapshot's LSN and, with a wall clock, a commit
        # time up to 60 ms before the snapshot's; a pause after the snapshot keeps its times in order.)
        snapshot = [next(records) for _ in range(sum(len(rows) for rows in gen.seed_rows().values()))]
        time.sleep(0.2)
        warm = snapshot + [next(records) for _ in range(300)]
        gen.produce_records(warm, settings.kafka.client, source.topics, 1)
        log_file = Path(tempfile.gettempdir()) / f"serving_latency-{os.getpid()}.ingest.log"
        ingester = subprocess.Popen(command, cwd=REPO, env=env, stderr=log_file.open("w"))
        con = connect_lake(settings)
        print(f"warming up: waiting for the first dbt build ({' '.join(command[3:])})", flush=True)
        while True:
            try:
                first = con.execute("select status from lake.staging._cdc_dbt_builds").fetchall()
                if first:
                    print(f"first build: {first[0][0]}", flush=True)
                    break
            except Exception:
                pass
            if ingester.poll() is not None:
                raise SystemExit(f"the ingester exited: see {log_file}")
            time.sleep(1)
        con.close()
        poller.start()
        measure_start = time.time()

        def timed() -> Iterator[gen.Record]:
            for record in records:
                if time.time() - measure_start >= args.duration:
                    return
                if record.topic == orders_topic and record.value is not None:
                    produced.append((source_seconds(record), time.time()))
                yield record

        print(f"producing {args.rate:g} events/s for {args.duration:.0f} s", flush=True)
        gen.produce_records(timed(), settings.kafka.client, source.topics, 1, rate=args.rate)
        last = max(s for s, _ in produced)
        deadline = time.time() + args.drain_timeout
        while time.time() < deadline and not (poller.samples and (poller.samples[-1][2] or 0) >= last):
            time.sleep(1)
        poller.stop.set()
        poller.join()
        if ingester.poll() is None:
            ingester.send_signal(signal.SIGTERM)
            ingester.wait(timeout=300)
        con = connect_lake(settings)
        builds = con.execute(
            "select status, elapsed_s, counts from lake.staging._cdc_dbt_builds where started_at >= ? "
            "order by started_at",
            [datetime.fromtimestamp(measure_start, UTC)],
        ).fetchall()
        con.close()
    finally:
        poller.stop.set()
        if ingester is not None:
            ingester.send_signal(signal.SIGTERM)
            ingester.wait(timeout=300)
        broker.stop()
        catalog.stop()
        shutil.rmtree(state, ignore_errors=True)

    staging = [v - p for s, p in produced if (v := poller.visible_at(s, 1)) is not None]
    serving = [v - p for s, p in produced if (v := poller.visible_at(s, 2)) is not None]
    missing = len(produced) - len(serving)
    result = {
        "command": " ".join(["bench/serving_latency.py", *sys.argv[1:]]),
        "interval": args.interval,
        "select": args.select or "(all)",
        "rate": args.rate,
        "duration_s": args.duration,
        "machine": {"python": platform.python_version(), "cores": os.cpu_count(), "load": os.getloadavg()},
        "staging_latency_s": summary(staging),
        "serving_latency_s": summary(serving) if serving else None,
        "serving_never_visible": missing,
        "builds": {
            "count": len(builds),
            "failed": sum(1 for b in builds if b[0] != "success"),
            "duration_s": summary([b[1] for b in builds]) if builds else None,
        },
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
    }
    out = REPO / "bench" / "results" / "serving_latency.json"
    out.parent.mkdir(exist_ok=True)
    out.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result, indent=2))
    if serving:
        st, sv = result["staging_latency_s"], result["serving_latency_s"]
        print(
            f"\nproduce->staging p50 {st['p50']:.2f} s p99 {st['p99']:.2f} s | "
            f"produce->serving p50 {sv['p50']:.1f} s p99 {sv['p99']:.1f} s | "
            f"ratio p50 {sv['p50'] / st['p50']:.0f}x | {len(builds)} builds "
            f"({result['builds']['failed']} failed), build p50 {result['builds']['duration_s']['p50']:.1f} s"
        )


if __name__ == "__main__":
    main()
