"""Commits per second one lake takes: 1, 2 and 3 writers landing small batches through the real sink.

Each writer is a process of its own with a `LakeSink` (as a member of one consumer group, its own run id)
landing batches of `--rows` change rows of its own partition as fast as it can for `--seconds`. Every batch
is one DuckLake transaction: rows, offsets, batch log, and the fence row every batch replaces, so commits of
all writers are serialised by the catalog. Reported per N: commits/s of the lake (all writers), the ratio
against N=1 of the same run, and the commits each writer lost to another and retried. Median of `--runs`.
It is the ceiling on the batches per second all members of one lake together land (docs/scale-out.md).

    .venv/bin/python bench/catalog_commits.py [--runs 3] [--seconds 20] [--rows 10]
"""

from __future__ import annotations

import argparse
import multiprocessing
import time
import uuid

import orjson
from common import REPO, bench_env, spread, write_result

from ingest.core.batch import Batch
from ingest.core.config import load_settings
from ingest.core.decode import Decoder, RawRecord
from ingest.core.ownership import Member
from ingest.core.sink import LakeSink
from ingest.embedded.catalog import connect_lake

GROUP = "commits-group"


def write_batches(
    env: dict[str, str], partition: int, rows: int, seconds: float, start: float
) -> tuple[int, int]:
    """One writer: land batches of `rows` records of `partition` until `start + seconds`; (commits, lost)."""
    settings = load_settings("dev", project_dir=REPO, environ=env)
    sink = LakeSink(lambda: connect_lake(settings), member=Member(GROUP, f"run-{uuid.uuid4().hex[:8]}"))
    sink.open()
    decoder = Decoder()
    offset = commits = 0
    time.sleep(max(0.0, start - time.time()))
    while time.time() < start + seconds:
        batch = Batch()
        for _ in range(rows):
            value = {
                "op": "c",
                "after": {"id": offset, "p": partition},
                "source": {"lsn": offset, "ts_ms": 1},
            }
            batch.add(
                decoder.decode(RawRecord("bench.s.items", partition, offset, b"{}", orjson.dumps(value)))
            )
            offset += 1
        sink.write(batch)
        commits += 1
    lost = sink.conflict_count
    sink.close()
    return commits, lost


def measure(env: dict[str, str], writers: int, rows: int, seconds: float) -> dict:
    start = time.time() + 8  # every writer has opened the lake by then (extensions, attach)
    with multiprocessing.get_context("spawn").Pool(writers) as pool:
        results = pool.starmap(write_batches, [(env, p, rows, seconds, start) for p in range(writers)])
    commits = sum(c for c, _ in results)
    return {
        "commits_per_s": commits / seconds,
        "commits_per_writer": [c for c, _ in results],
        "lost_per_writer": [lost for _, lost in results],
    }


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--seconds", type=float, default=20)
    parser.add_argument("--rows", type=int, default=10)
    args = parser.parse_args()
    raw: dict[int, list[dict]] = {1: [], 2: [], 3: []}
    with bench_env() as bench:
        for run in range(args.runs):
            for n in (1, 2, 3):
                env = bench.lake_env("^bench\\.", GROUP.removesuffix("-group") + f"_{run}_{n}")
                r = measure(env, n, args.rows, args.seconds)
                r["ratio"] = r["commits_per_s"] / (
                    raw[1][-1]["commits_per_s"] if n > 1 else r["commits_per_s"]
                )
                raw[n].append(r)
                print(
                    f"run {run + 1} N={n}: {r['commits_per_s']:.1f} commits/s "
                    f"(ratio vs N=1 {r['ratio']:.2f}), "
                    f"per writer {r['commits_per_writer']}, lost and retried {r['lost_per_writer']}",
                    flush=True,
                )
    results = {
        f"N={n}": {
            "commits_per_s": spread([r["commits_per_s"] for r in rs]),
            "ratio": spread([r["ratio"] for r in rs]),
            "commits_per_writer": [r["commits_per_writer"] for r in rs],
            "lost_per_writer": [r["lost_per_writer"] for r in rs],
        }
        for n, rs in raw.items()
    }
    write_result(
        "catalog_commits",
        f"python bench/catalog_commits.py --runs {args.runs} --seconds {args.seconds:g} --rows {args.rows}",
        results,
        rows_per_batch=args.rows,
        seconds=args.seconds,
    )
    for n in (1, 2, 3):
        r = results[f"N={n}"]
        print(
            f"N={n}: {r['commits_per_s']['median']:.1f} commits/s "
            f"(min {r['commits_per_s']['min']:.1f}, max {r['commits_per_s']['max']:.1f}), "
            f"ratio vs N=1 {r['ratio']['median']:.2f}"
        )


if __name__ == "__main__":
    main()
