"""Run every benchmark in turn, then render docs/benchmarks.md (what `make bench` does).

`--scale full` uses the sizes of the goals (about two hours on two cores; the 10M-event history of the
incremental benchmark needs ~4 GB of memory in the embedded broker, schemas off); `--scale quick` runs
the same benchmarks at sizes that fit a working session (the figures say which sizes ran).
`--only NAME[,NAME]` runs a subset.

    .venv/bin/python bench/run_all.py [--scale full|quick] [--only freshness,memory]
"""

from __future__ import annotations

import argparse
import subprocess
import sys
from pathlib import Path

BENCH = Path(__file__).resolve().parent

SCALES: dict[str, dict[str, list[str]]] = {
    "full": {
        "ingest_throughput": ["--events", "200000", "--runs", "3"],
        "peer_dlt": ["--events", "1000000", "--runs", "3"],
        "freshness": ["--rates", "1000,10000", "--duration", "60", "--runs", "3"],
        "dbt_incremental": ["--history", "1000000,10000000", "--runs", "3", "--chunk", "1000000"],
        "memory": ["--events", "5000000", "--runs", "3"],
        "scale_out": ["--events", "200000", "--runs", "3"],
        "catalog_commits": ["--runs", "3", "--seconds", "20"],
    },
    "quick": {
        "ingest_throughput": ["--events", "100000", "--runs", "3"],
        "peer_dlt": ["--events", "100000", "--runs", "3"],
        "freshness": ["--rates", "1000,10000", "--duration", "60", "--runs", "3"],
        "dbt_incremental": ["--history", "20000,200000", "--runs", "3"],
        "memory": ["--events", "1000000", "--runs", "3"],
        "scale_out": ["--events", "60000", "--runs", "3"],
        "catalog_commits": ["--runs", "3", "--seconds", "10"],
    },
}


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--scale", choices=sorted(SCALES), default="full")
    parser.add_argument("--only", default="", help="comma-separated benchmark names")
    args = parser.parse_args()
    selected = [n for n in args.only.split(",") if n] or list(SCALES[args.scale])
    failed = []
    for name in selected:
        command = [sys.executable, str(BENCH / f"{name}.py"), *SCALES[args.scale][name]]
        print(f"== {name}: {' '.join(command[1:])}", flush=True)
        if subprocess.run(command, cwd=BENCH).returncode != 0:
            failed.append(name)
    subprocess.run([sys.executable, str(BENCH / "report.py")], check=True)
    if failed:
        raise SystemExit(f"benchmarks failed: {', '.join(failed)}")


if __name__ == "__main__":
    main()
