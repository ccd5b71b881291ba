"""Incremental cost: `dbt build` of the curated models after 10,000 new events, on top of histories of
different sizes, and a full refresh at the largest size.

One lake for the whole invocation, grown size by size: the event generator (`ingest generate`, schemas off by
default: see --schemas) produces history in chunks on one topic prefix, each chunk continuing the source's
log (`--after-lsn/--after-tx-id`), and the real ingester lands it. After growing each size, `ingest maintain`
merges the per-batch files and expires the growth's snapshots, as `ingest run --maintain-every` does in
operation (`--no-maintain` skips it). At each history size: one untimed `dbt build --select curated` catches
the models up; then per run: 10,000 new events, ingested, then the timed `dbt build --select curated`
(models, data and unit tests). At the largest size the same runs also time `dbt build --select curated
--full-refresh`. Figures: wall time of the dbt process (start-up and parsing included) and, from
`run_results.json`, the summed execution time of the models and of the tests, the rest ("other": start-up,
parsing, catalog work outside any node), and the median time of every node.

Ratios: incremental at the largest history / at the smallest (goal <= 1.5 for 10M vs 1M); full refresh /
incremental at the largest (goal >= 20). Full size (~1 hour on 2 cores, ~4 GB of broker memory):

    .venv/bin/python bench/dbt_incremental.py --history 1000000,10000000 --runs 3 --chunk 1000000
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import tempfile
import time
from pathlib import Path

from common import BIN, REPO, bench_env, dbt, ingest_until_caught_up, spread, write_result

PREFIX = "benchinc"
NEW_EVENTS = 10_000


def source_position(env: dict[str, str]) -> tuple[int, int]:
    """Where the generated source's log ended (max LSN and tx id in staging), as `ingest demo` reads it."""
    from ingest.core.config import load_settings
    from ingest.devtools.demo import source_position as lake_source_position

    return lake_source_position(load_settings("dev", project_dir=REPO, environ=env))


def staging_rows(env: dict[str, str]) -> int:
    from ingest.core.config import load_settings
    from ingest.embedded.catalog import connect_lake

    con = connect_lake(load_settings("dev", project_dir=REPO, environ=env))
    try:
        tables = con.execute(
            "select table_name from duckdb_tables() where database_name = 'lake' "
            "and schema_name = 'staging' and table_name like 'inventory__%'"
        ).fetchall()
        return sum(con.execute(f"select count(*) from lake.staging.{t}").fetchone()[0] for (t,) in tables)
    finally:
        con.close()


def generate(env: dict[str, str], events: int, seed: int, schemas: bool) -> None:
    lsn, tx = source_position(env)
    subprocess.run(
        [
            str(BIN / "ingest"),
            "generate",
            "--events",
            str(events),
            "--seed",
            str(seed),
            "--topic-prefix",
            PREFIX,
            "--after-lsn",
            str(lsn),
            "--after-tx-id",
            str(tx),
            "--partitions",
            "1",
            "--schemas" if schemas else "--no-schemas",
        ],
        env=env,
        cwd=REPO,
        check=True,
        stdout=subprocess.DEVNULL,
    )


def grow(env: dict[str, str], events: int, seed: int, chunk: int, schemas: bool) -> None:
    """Produce and land `events` change events, in chunks (the broker keeps everything in memory)."""
    done = 0
    while done < events:
        size = min(chunk, events - done)
        started = time.perf_counter()
        generate(env, size, seed + done, schemas)
        generated = time.perf_counter() - started
        ingest_until_caught_up(env)
        done += size
        if events > NEW_EVENTS:
            print(
                f"  {done:,}/{events:,} events: generated in {generated:.0f} s, "
                f"landed in {time.perf_counter() - started - generated:.0f} s",
                flush=True,
            )


def maintain(env: dict[str, str]) -> float:
    """`ingest maintain` as a deployment runs it (`ingest run --maintain-every`): merge the per-batch files,
    expire the snapshots of the growth. Returns wall seconds."""
    started = time.perf_counter()
    subprocess.run(
        [str(BIN / "ingest"), "maintain", "--older-than", "1s"],
        env=env,
        cwd=REPO,
        check=True,
        stdout=subprocess.DEVNULL,
    )
    return time.perf_counter() - started


def timed_build(env: dict[str, str], work: Path, *extra: str) -> tuple[dict[str, float], dict[str, float]]:
    """(wall / models / tests / other seconds, execution seconds per node) of one `dbt build`."""
    wall = dbt(env, work, "build", "--select", "curated", "--indirect-selection", "cautious", *extra)
    results = json.loads((work / "target" / "run_results.json").read_text())["results"]
    models = sum(r["execution_time"] for r in results if r["unique_id"].startswith("model."))
    tests = sum(r["execution_time"] for r in results if r["unique_id"].startswith(("test.", "unit_test.")))
    nodes = {r["unique_id"]: round(r["execution_time"], 3) for r in results}
    # other: dbt's start-up, parsing, connection and catalog work outside any node
    return {"wall_s": wall, "models_s": models, "tests_s": tests, "other_s": wall - models - tests}, nodes


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--history", default="100000,1000000", help="history sizes (change events)")
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--chunk", type=int, default=500_000, help="events produced per generator call")
    parser.add_argument(
        "--schemas",
        action=argparse.BooleanOptionalAction,
        default=False,
        help="schemas.enable (off by default: the embedded broker keeps every event in memory, and 10M "
        "events with schemas are ~3x larger than the ~24 GB of this machine)",
    )
    parser.add_argument(
        "--maintain",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="run `ingest maintain` after growing each history size, as a deployment does with "
        "`ingest run --maintain-every` (without it the lake keeps one small file and one snapshot per batch)",
    )
    args = parser.parse_args()
    sizes = sorted(int(s) for s in args.history.split(","))
    results: dict[str, dict] = {}
    with bench_env() as bench:
        env = bench.lake_env(rf"^{PREFIX}[.]")
        work = Path(tempfile.mkdtemp(prefix="inc-", dir=bench.state))
        landed = 0
        seed = 1
        for size in sizes:
            started = time.perf_counter()
            grow(env, size - landed, seed, args.chunk, args.schemas)
            seed += size
            landed = size
            maintained = maintain(env) if args.maintain else None
            dbt(env, work, "build", "--select", "curated", "--indirect-selection", "cautious")
            print(
                f"history {size:,}: grown, "
                + (f"maintained in {maintained:.0f} s, " if maintained is not None else "")
                + f"built in {time.perf_counter() - started:.0f} s",
                flush=True,
            )
            rows: dict[str, list[float]] = {}
            nodes: dict[str, dict[str, list[float]]] = {}
            for run in range(args.runs):
                grow(env, NEW_EVENTS, seed, NEW_EVENTS, args.schemas)
                seed += NEW_EVENTS
                landed += NEW_EVENTS
                incremental, incremental_nodes = timed_build(env, work)
                for name, value in incremental.items():
                    rows.setdefault(f"incremental_{name}", []).append(value)
                for node, value in incremental_nodes.items():
                    nodes.setdefault("incremental", {}).setdefault(node, []).append(value)
                line = f"history {size:,} run {run + 1}: incremental {incremental['wall_s']:.1f} s"
                if size == sizes[-1]:
                    full, full_nodes = timed_build(env, work, "--full-refresh")
                    for name, value in full.items():
                        rows.setdefault(f"full_refresh_{name}", []).append(value)
                    for node, value in full_nodes.items():
                        nodes.setdefault("full_refresh", {}).setdefault(node, []).append(value)
                    ratio = full["wall_s"] / incremental["wall_s"]
                    rows.setdefault("full_over_incremental", []).append(ratio)
                    line += f", full refresh {full['wall_s']:.1f} s"
                print(line, flush=True)
            results[str(size)] = {name: spread(values) for name, values in rows.items()}
            results[str(size)]["staging_rows"] = staging_rows(env)
            if maintained is not None:
                results[str(size)]["maintain_s"] = round(maintained, 1)
            # median execution seconds per node, slowest first: what an incremental build spends its time on
            results[str(size)]["nodes"] = {
                kind: dict(
                    sorted(
                        ((node, round(statistics.median(v), 3)) for node, v in per_node.items()),
                        key=lambda item: -item[1],
                    )
                )
                for kind, per_node in nodes.items()
            }
    small, large = str(sizes[0]), str(sizes[-1])
    if small != large:
        results["incremental_large_over_small"] = {
            part: results[large][f"incremental_{part}_s"]["median"]
            / results[small][f"incremental_{part}_s"]["median"]
            for part in ("wall", "models", "tests", "other")
        }
    write_result(
        "dbt_incremental",
        f"python bench/dbt_incremental.py --history {args.history} --runs {args.runs} --chunk {args.chunk}"
        + (" --schemas" if args.schemas else "")
        + ("" if args.maintain else " --no-maintain"),
        results,
        history=sizes,
        new_events=NEW_EVENTS,
        schemas=args.schemas,
        maintain=args.maintain,
        runs=args.runs,
        goal="incremental(10M) / incremental(1M) <= 1.5; full refresh(10M) / incremental(10M) >= 20",
    )


if __name__ == "__main__":
    main()
