"""`ingest maintain`: routine DuckLake upkeep, safe while the ingester and dbt run.

Every micro-batch commits a Parquet file and a snapshot per table it touches, so without upkeep a lake
grows by thousands of small files a day. Each step is its own DuckLake transaction; a commit conflict with
a concurrent writer (the ingester appending, dbt rebuilding) rolls back and retries with backoff, and a
step that still fails is reported and left for the next run (nothing is half-done: a failed commit
writes nothing). Steps, in order:

1. prune `staging._cdc_offsets` to the newest row per partition (the table is append-only for the
   ingester; the resume position is the row with the largest `next_offset`, which is kept);
2. `ducklake_rewrite_data_files`: rewrite files whose rows are mostly deleted (the pruned offsets);
3. `ducklake_merge_adjacent_files`: merge the small per-batch files of each table;
4. `ducklake_flush_inlined_data`: move rows inlined in the catalog into Parquet;
5. `ducklake_expire_snapshots(older_than)`: forget snapshots older than `--older-than` (time travel and
   readers older than that lose their snapshot, nobody else);
6. `ducklake_cleanup_old_files`: delete the files only expired snapshots referenced;
7. `ducklake_delete_orphaned_files(older_than)`: delete files no snapshot ever referenced (a writer
   killed between writing a file and committing it). Never younger than ORPHAN_MIN_AGE, whatever
   `--older-than` says: a running ingester's batch writes its files before it commits them.
"""

from __future__ import annotations

import logging
import random
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import timedelta

import duckdb

from ingest.core.lake import LAKE
from ingest.core.offsets import OFFSETS_TABLE
from ingest.ops.leases import LakeLease

log = logging.getLogger(__name__)

ORPHAN_MIN_AGE = timedelta(minutes=10)
REWRITE_DELETE_THRESHOLD = 0.1
RETRIES = 8


@dataclass
class LakeFiles:
    data_files: int
    data_bytes: int
    delete_files: int
    snapshots: int
    offsets_rows: int


@dataclass
class MaintainReport:
    before: LakeFiles
    after: LakeFiles | None = None
    steps: dict[str, str] = field(default_factory=dict)  # step -> "ok (...)" or "failed: ..."
    seconds: float = 0.0

    @property
    def failed(self) -> list[str]:
        return [step for step, outcome in self.steps.items() if outcome.startswith("failed")]


def parse_duration(text: str) -> timedelta:
    """`90s`, `15m`, `1h`, `7d` (or plain seconds)."""
    units = {"s": 1, "m": 60, "h": 3600, "d": 86400}
    text = text.strip().lower()
    try:
        if text and text[-1] in units:
            return timedelta(seconds=float(text[:-1]) * units[text[-1]])
        return timedelta(seconds=float(text))
    except ValueError:
        raise ValueError(f"not a duration: {text!r} (use e.g. 30s, 15m, 1h, 7d)") from None


def lake_files(con: duckdb.DuckDBPyConnection) -> LakeFiles:
    files, size, deletes = con.execute(
        "select coalesce(sum(file_count), 0), coalesce(sum(file_size_bytes), 0), "
        f"coalesce(sum(delete_file_count), 0) from ducklake_table_info('{LAKE}')"
    ).fetchone()
    snapshots = con.execute(f"select count(*) from ducklake_snapshots('{LAKE}')").fetchone()[0]
    has_offsets = con.execute(
        "select count(*) from duckdb_tables() where database_name = ? and schema_name = 'staging' "
        "and table_name = '_cdc_offsets'",
        [LAKE],
    ).fetchone()[0]
    rows = con.execute(f"select count(*) from {OFFSETS_TABLE}").fetchone()[0] if has_offsets else 0
    return LakeFiles(int(files), int(size), int(deletes), int(snapshots), int(rows))


def _seconds(age: timedelta) -> str:
    return f"interval '{int(age.total_seconds())} seconds'"


def maintenance_steps(older_than: timedelta) -> list[tuple[str, str]]:
    orphan_age = max(older_than, ORPHAN_MIN_AGE)
    return [
        (
            "prune _cdc_offsets",
            f"""delete from {OFFSETS_TABLE} as old
                where exists (
                    select 1 from {OFFSETS_TABLE} as newer
                    where newer.topic = old.topic and newer."partition" = old."partition"
                      and newer.next_offset > old.next_offset
                )""",
        ),
        (
            "rewrite data files",
            f"call ducklake_rewrite_data_files('{LAKE}', delete_threshold => {REWRITE_DELETE_THRESHOLD})",
        ),
        ("merge adjacent files", f"call ducklake_merge_adjacent_files('{LAKE}')"),
        ("flush inlined data", f"call ducklake_flush_inlined_data('{LAKE}')"),
        (
            "expire snapshots",
            f"call ducklake_expire_snapshots('{LAKE}', older_than => now() - {_seconds(older_than)})",
        ),
        ("cleanup old files", f"call ducklake_cleanup_old_files('{LAKE}', cleanup_all => true)"),
        (
            "delete orphaned files",
            f"call ducklake_delete_orphaned_files('{LAKE}', older_than => now() - {_seconds(orphan_age)})",
        ),
    ]


def _run_step(con: duckdb.DuckDBPyConnection, name: str, sql: str) -> str:
    for attempt in range(RETRIES):
        try:
            result = con.execute(sql).fetchall()
            return f"ok ({len(result)} rows)"
        except duckdb.Error as error:
            try:
                con.execute("rollback")
            except duckdb.Error:
                log.debug("no transaction to roll back after %s", name)
            if attempt == RETRIES - 1:
                return f"failed after {RETRIES} attempts: {error}"
            delay = min(10.0, 0.1 * 2**attempt) * (0.5 + random.random())
            log.warning("%s (attempt %d): %s; retrying in %.2fs", name, attempt + 1, error, delay)
            time.sleep(delay)
    raise AssertionError("unreachable")


def maintain(
    connect: Callable[[], duckdb.DuckDBPyConnection],
    older_than: timedelta = timedelta(hours=1),
) -> MaintainReport:
    started = time.monotonic()
    con = connect()
    try:
        report = MaintainReport(before=lake_files(con))
        for name, sql in maintenance_steps(older_than):
            if name == "prune _cdc_offsets" and not report.before.offsets_rows:
                continue
            report.steps[name] = _run_step(con, name, sql)
            log.info("maintain: %s: %s", name, report.steps[name])
        report.after = lake_files(con)
    finally:
        con.close()
    report.seconds = time.monotonic() - started
    return report


def format_report(report: MaintainReport) -> str:
    after = report.after or report.before
    lines = [
        f"data files {report.before.data_files} -> {after.data_files}, "
        f"delete files {report.before.delete_files} -> {after.delete_files}, "
        f"bytes {report.before.data_bytes} -> {after.data_bytes}, "
        f"snapshots {report.before.snapshots} -> {after.snapshots}, "
        f"_cdc_offsets rows {report.before.offsets_rows} -> {after.offsets_rows} "
        f"in {report.seconds:.1f} s"
    ]
    lines += [f"  {step}: {outcome}" for step, outcome in report.steps.items()]
    return "\n".join(lines)


def run_periodically(
    connect: Callable[[], duckdb.DuckDBPyConnection],
    every: timedelta,
    older_than: timedelta,
    stop: threading.Event,
    lease: LakeLease | None = None,
) -> threading.Thread:
    """`ingest run --maintain-every`: maintenance in a background thread of the ingester, until `stop`;
    with several members, only the one holding the lease maintains."""

    def loop() -> None:
        while not stop.wait(every.total_seconds()):
            if lease is not None and not lease.take():
                continue
            try:
                report = maintain(connect, older_than)
            except duckdb.Error as error:  # the catalog is down: the ingester says so itself; try later
                log.warning("scheduled maintenance failed: %s", error)
                continue
            log.info("scheduled maintenance: %s", format_report(report).replace("\n", ";"))

    def loop_then_release() -> None:
        try:
            loop()
        finally:
            if lease is not None:
                lease.release()

    thread = threading.Thread(target=loop_then_release, name="maintain")
    thread.start()
    return thread
