"""Peer: dlt (merge write disposition into DuckDB) vs our ingester + the curated current-state model.

The same events from the same broker topic, per run: N customers change events (schemas off, ~670 B: the
curated model's contract has exactly the corpus's columns) over N/10 keys: a create per key, then updates,
and a delete for every 50th key in the last pass; the LSN grows with the event number.

- dlt side: a `dlt.resource` reading the topic with confluent-kafka (`assign()` + `consume(10000)` to
  partition EOF, pages of rows: the row image plus `_lsn` and `_deleted`), `write_disposition=merge`
  (strategy delete-insert, primary key `id`, `dedup_sort` on `_lsn` desc, `hard_delete` on `_deleted`),
  Parquet load files, into a DuckDB file. Timed: `pipeline.run` (extract, normalize, load).
- our side: the real CLI `ingest run --until-caught-up` (a child process: decode, type, land every change
  into staging with its offsets, exactly once), then `dbt run` of `inventory__customers__history` and
  `inventory__customers` (full SCD2 history, then current state by the cdc_apply strategy). Timed: both,
  process start-ups included. We do more work (the history table and the staging log are kept too).
- check: the current rows (id, first_name, last_name, email) must be equal on both sides (symmetric
  difference empty), and the row count must be the expected number of live keys.

    .venv/bin/python bench/peer_dlt.py [--events 200000] [--runs 3]
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
import uuid
from pathlib import Path

import orjson
from common import (
    REPO,
    BenchEnv,
    bench_env,
    consume_pages,
    customer_payload,
    dbt,
    encode,
    ingest_until_caught_up,
    produce_all,
    spread,
    write_result,
)

CURATED = ["inventory__customers__history", "inventory__customers"]


def events(n: int, keys: int):
    last_pass = (n - 1) // keys
    for i in range(n):
        key = i % keys
        current = i // keys
        op = "c" if current == 0 else ("d" if current == last_pass and key % 50 == 0 else "u")
        yield encode(customer_payload(i, key, op, notes=0), key, None)


def expected_live(n: int, keys: int) -> int:
    last_pass = (n - 1) // keys
    in_last = n - last_pass * keys
    deleted = sum(1 for k in range(in_last) if k % 50 == 0) if last_pass > 0 else 0
    return min(n, keys) - deleted


def run_dlt(bootstrap: str, topic: str, work: Path) -> tuple[float, Path]:
    os.environ.setdefault("RUNTIME__DLTHUB_TELEMETRY", "false")
    os.environ.setdefault("RUNTIME__LOG_LEVEL", "WARNING")
    import dlt

    @dlt.resource(
        name="customers",
        primary_key="id",
        write_disposition={"disposition": "merge", "strategy": "delete-insert"},
        columns={
            "_lsn": {"data_type": "bigint", "dedup_sort": "desc"},
            "_deleted": {"data_type": "bool", "hard_delete": True},
        },
    )
    def customers():
        pages = consume_pages(bootstrap, topic, "dlt")
        try:
            for page in pages:
                rows = []
                for message in page.messages:
                    event = orjson.loads(message.value())
                    deleted = event["op"] == "d"
                    row = dict(event["before"] if deleted else event["after"])
                    row["_lsn"] = event["source"]["lsn"]
                    row["_deleted"] = deleted
                    rows.append(row)
                if rows:
                    yield rows
                if page.eof:
                    return
        finally:
            pages.close()

    database = work / "dlt.duckdb"
    pipeline = dlt.pipeline(
        pipeline_name=f"bench_{uuid.uuid4().hex[:6]}",
        destination=dlt.destinations.duckdb(str(database)),
        dataset_name="bench",
        pipelines_dir=str(work / "dlt-pipelines"),
    )
    started = time.perf_counter()
    pipeline.run(customers(), loader_file_format="parquet")
    return time.perf_counter() - started, database


def compare(env: dict[str, str], dlt_database: Path) -> dict[str, int]:
    from ingest.core.config import load_settings
    from ingest.embedded.catalog import connect_lake

    settings = load_settings("dev", project_dir=REPO, environ=env)
    con = connect_lake(settings)
    try:
        con.execute(f"attach '{dlt_database}' as peer (read_only)")
        schema = con.execute(
            "select schema_name from duckdb_tables() where database_name = 'lake' "
            "and table_name = 'inventory__customers' and schema_name like '%curated%'"
        ).fetchone()[0]
        ours = f"select id, first_name, last_name, email from lake.{schema}.inventory__customers"
        theirs = "select id, first_name, last_name, email from peer.bench.customers"
        return {
            "ours_rows": con.execute(f"select count(*) from ({ours})").fetchone()[0],
            "dlt_rows": con.execute(f"select count(*) from ({theirs})").fetchone()[0],
            "only_ours": con.execute(f"select count(*) from ({ours} except all {theirs})").fetchone()[0],
            "only_dlt": con.execute(f"select count(*) from ({theirs} except all {ours})").fetchone()[0],
        }
    finally:
        con.close()


def one_run(bench: BenchEnv, n: int, keys: int, run: int) -> dict[str, float]:
    topic = f"peer{run}{uuid.uuid4().hex[:6]}.inventory.customers"
    produce_all(bench.bootstrap, topic, events(n, keys))
    work = Path(tempfile.mkdtemp(prefix="peer-", dir=bench.state))
    dlt_s, dlt_database = run_dlt(bench.bootstrap, topic, work)
    env = bench.lake_env(rf"^{topic.replace('.', '[.]')}$")
    ingest_s = ingest_until_caught_up(env)
    dbt_s = dbt(env, work, "run", "--select", *CURATED)
    check = compare(env, dlt_database)
    live = expected_live(n, keys)
    equal = check["only_ours"] == 0 and check["only_dlt"] == 0 and check["ours_rows"] == live
    ours_s = ingest_s + dbt_s
    row = {
        "dlt_s": dlt_s,
        "ingest_s": ingest_s,
        "dbt_s": dbt_s,
        "dlt_per_s": n / dlt_s,
        "ours_per_s": n / ours_s,
        "ratio": dlt_s / ours_s,
        "ratio_staging_only": dlt_s / ingest_s,
        "live_keys": live,
        **check,
        "equal": equal,
    }
    print(
        f"run {run + 1}: dlt {n / dlt_s:,.0f}/s ({dlt_s:.1f} s); ours {n / ours_s:,.0f}/s (ingest "
        f"{ingest_s:.1f} s + dbt {dbt_s:.1f} s); ratio {dlt_s / ours_s:.2f}x; staging only "
        f"{dlt_s / ingest_s:.2f}x; equal={equal} {check}",
        flush=True,
    )
    if not equal:
        raise SystemExit(f"end results differ: {check}, expected {live} live keys")
    return row


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--events", type=int, default=200_000)
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()
    keys = max(1, args.events // 10)
    with bench_env() as bench:
        rows = [one_run(bench, args.events, keys, run) for run in range(args.runs)]
    results = {
        name: spread([r[name] for r in rows])
        for name in ("ratio", "ratio_staging_only", "dlt_per_s", "ours_per_s", "dlt_s", "ingest_s", "dbt_s")
    }
    results["equal_end_results"] = all(r["equal"] for r in rows)
    results["live_keys"] = rows[0]["live_keys"]
    write_result(
        "peer_dlt",
        f"python bench/peer_dlt.py --events {args.events} --runs {args.runs}",
        results,
        events=args.events,
        keys=keys,
        runs=args.runs,
        goal="ours >= 5x dlt's events/s, equal end results",
    )


if __name__ == "__main__":
    main()
