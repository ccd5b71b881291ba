"""`ingest status`: one screen on the pipeline's health, read from the lake and the broker.

It works whether or not an ingester runs, because everything it shows is recorded in the lake:

- ingester runs: `staging._cdc_runs` (one row per `ingest run`: host, pid, start, stop, metrics port); an
  unstopped run is checked against the process table when it ran on this host;
- the last batch: `staging._cdc_batches` (size, landing time) and `staging._cdc_offsets` (landed positions);
- freshness: the newest `_cdc_source_ts` of every staging table in `_cdc_tables`;
- dead letters and quarantine: `staging._dead_letters`, `staging._cdc_quarantine`;
- dbt builds: `staging._cdc_dbt_builds`, written at the end of every `dbt build` (by hand or continuous) by
  the dbt plugin (ingest/dbt_plugin.py);
- lag: landed position versus the broker's high watermark, which a short-lived consumer (no group join,
  nothing committed) reads from a fetch response: ListOffsets (`get_watermark_offsets` without cache) is
  wrong on the dev broker, the fetch response's high watermark is right everywhere.

Nothing secret is printed: the catalog connection string goes through the same scrubber as the logs.
"""

from __future__ import annotations

import json
import logging
import os
import re
import socket
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import duckdb
import psutil
from confluent_kafka import OFFSET_BEGINNING, Consumer, KafkaError, KafkaException, TopicPartition

from ingest.core import contract
from ingest.core.config import IngestSettings
from ingest.core.lake import LAKE, quote_ident, quote_literal
from ingest.core.logs import scrub
from ingest.core.typemap import is_inferred

log = logging.getLogger(__name__)

RUNS_TABLE = contract.RUNS.qualified
ASSIGNMENTS_TABLE = contract.ASSIGNMENTS.qualified
RUNS_DDL = contract.RUNS.ddl
PROBE_TIMEOUT_S = 5.0


# ------------------------------------------------------------------------------------- ingester runs
@dataclass
class RunInfo:
    run_id: str
    target: str
    metrics_port: int | None
    dbt_build_every: str | None


def register_run(con: duckdb.DuckDBPyConnection, info: RunInfo) -> None:
    """Record that an ingester starts (this host, this pid); `finish_run` records its stop."""
    con.execute("create schema if not exists lake.staging")
    con.execute(RUNS_DDL)
    con.execute(
        f"insert into {RUNS_TABLE} (run_id, target, host, pid, started_at, metrics_port, dbt_build_every) "
        "values (?, ?, ?, ?, now(), ?, ?)",
        [
            info.run_id,
            info.target,
            socket.gethostname(),
            os.getpid(),
            info.metrics_port,
            info.dbt_build_every,
        ],
    )


def finish_run(con: duckdb.DuckDBPyConnection, run_id: str, exit_status: str) -> None:
    con.execute(
        f"update {RUNS_TABLE} set stopped_at = now(), exit_status = ? where run_id = ?", [exit_status, run_id]
    )


def _process_alive(host: str, pid: int, started_at: datetime) -> bool | None:
    """Whether the run's process still exists (None: it ran on another host, cannot tell from here)."""
    if host != socket.gethostname():
        return None
    try:
        process = psutil.Process(pid)
        # A reused pid belongs to a process created after the run started.
        return process.create_time() <= started_at.timestamp() + 1 and process.status() != "zombie"
    except psutil.Error:
        return False


# ---------------------------------------------------------------------------------------- the lake
def _existing_tables(con: duckdb.DuckDBPyConnection) -> set[str]:
    rows = con.execute(
        f"select table_name from duckdb_tables() where database_name = '{LAKE}' and schema_name = 'staging'"
    ).fetchall()
    return {name for (name,) in rows}


def _rows(con: duckdb.DuckDBPyConnection, sql: str) -> list[dict[str, Any]]:
    cursor = con.execute(sql)
    names = [d[0] for d in cursor.description]
    return [dict(zip(names, row, strict=True)) for row in cursor.fetchall()]


def _runs(con: duckdb.DuckDBPyConnection, existing: set[str], target: str) -> dict[str, Any]:
    if "_cdc_runs" not in existing:
        return {"running": False, "runs": [], "last_run": None}
    runs = _rows(
        con,
        "select run_id, target, host, pid, started_at, stopped_at, exit_status, metrics_port, "
        f"dbt_build_every from {RUNS_TABLE} where target = {quote_literal(target)} "
        "order by started_at desc limit 20",
    )
    live = []
    for run in runs:
        if run["stopped_at"] is not None:
            run["state"] = "stopped"
            continue
        alive = _process_alive(run["host"], run["pid"], run["started_at"])
        run["state"] = {True: "running", False: "gone (killed or crashed)", None: "unknown (other host)"}[
            alive
        ]
        if alive is not False:
            live.append(run)
    return {
        "running": any(r["state"] == "running" for r in live) or (None if live else False),
        "runs": live,
        "last_run": runs[0] if runs else None,
    }


def _members(con: duckdb.DuckDBPyConnection, existing: set[str], runs: list[dict[str, Any]]) -> list[dict]:
    """The live runs as members of the group: the partitions each recorded last, and its last batch."""
    members = []
    for run in runs:
        member = {"run_id": run["run_id"], "host": run["host"], "pid": run["pid"], "state": run["state"]}
        member["partitions"] = []
        if "_cdc_assignments" in existing:
            row = con.execute(
                f"select partitions from {ASSIGNMENTS_TABLE} where run_id = ? "
                "order by assigned_at desc limit 1",
                [run["run_id"]],
            ).fetchone()
            if row is not None:
                member["partitions"] = [(t, int(p)) for t, p in json.loads(row[0])]
        member["last_batch"] = None
        if "_cdc_batches" in existing:
            batches = _rows(
                con,
                "select batch_id, records, committed_at from lake.staging._cdc_batches "
                f"where run_id = {quote_literal(run['run_id'])} order by batch_id desc limit 1",
            )
            member["last_batch"] = batches[0] if batches else None
        members.append(member)
    return members


def _last_batch(con: duckdb.DuckDBPyConnection, existing: set[str]) -> dict[str, Any] | None:
    if "_cdc_batches" not in existing:
        return None
    rows = _rows(
        con,
        "select batch_id, records, change_rows, dead_letters, quarantined, started_at, landing_ms, "
        "committed_at from lake.staging._cdc_batches order by batch_id desc limit 1",
    )
    return rows[0] if rows else None


def _landed_positions(con: duckdb.DuckDBPyConnection, existing: set[str]) -> dict[tuple[str, int], dict]:
    if "_cdc_offsets" not in existing:
        return {}
    rows = _rows(
        con,
        'select topic, "partition", max(next_offset) as landed, max(committed_at) as last_commit '
        "from lake.staging._cdc_offsets group by all",
    )
    return {(r["topic"], r["partition"]): r for r in rows}


def _tables(con: duckdb.DuckDBPyConnection, existing: set[str], now: datetime) -> list[dict[str, Any]]:
    if "_cdc_tables" not in existing:
        return []
    tables = _rows(
        con,
        "select table_name, topic, quarantined, schema_mode, columns from lake.staging._cdc_tables "
        "order by table_name",
    )
    present = [t for t in tables if t["table_name"] in existing]
    if present:
        union = " union all ".join(
            f"select {quote_literal(t['table_name'])} as table_name, max(_cdc_source_ts) as newest, "
            f"count(*) as row_count from lake.staging.{quote_ident(t['table_name'])}"
            for t in present
        )
        newest = {r["table_name"]: r for r in _rows(con, union)}
    else:
        newest = {}
    for table in tables:
        columns = json.loads(table.pop("columns") or "[]")
        # a column the types file does not type was inferred from values: pull the file again
        table["untyped_columns"] = (
            [c["name"] for c in columns if is_inferred(c.get("source_type"))]
            if table.pop("schema_mode") == "declared"
            else []
        )
        found = newest.get(table["table_name"], {})
        table["rows"] = found.get("row_count", 0)
        table["newest_source_ts"] = found.get("newest")
        ts = table["newest_source_ts"]
        table["freshness_s"] = None if ts is None else max(0.0, (now - ts).total_seconds())
    return tables


def newest_source_times(con: duckdb.DuckDBPyConnection) -> dict[str, float]:
    """Epoch seconds of the newest landed source event per staging table (seeds the freshness metric)."""
    now = datetime.now(UTC)
    return {
        t["table_name"]: t["newest_source_ts"].timestamp()
        for t in _tables(con, _existing_tables(con), now)
        if t["newest_source_ts"] is not None
    }


def _failed_counts(con: duckdb.DuckDBPyConnection, existing: set[str]) -> dict[str, Any]:
    result: dict[str, Any] = {}
    for key, table, group in (
        ("dead_letters", "_dead_letters", "topic"),
        ("quarantine", "_cdc_quarantine", "table_name"),
    ):
        if table not in existing:
            result[key] = {"total": 0, "by": {}, "last_at": None}
            continue
        # open ones only: `ingest dead-letters retry` resolves a failed event with a row naming it
        kind = "'dl'" if table == "_dead_letters" else "'q'"
        unresolved = (
            "where not exists (select 1 from lake.staging._dead_letter_resolutions r "
            f'where r.kind = {kind} and r.topic = f.topic and r."partition" = f."partition" '
            'and r."offset" = f."offset" and r.failed_at = f.failed_at)'
            if "_dead_letter_resolutions" in existing
            else ""
        )
        rows = con.execute(
            f"select {group}, count(*), max(failed_at) from lake.staging.{table} as f {unresolved} "
            "group by all order by 1"
        ).fetchall()
        result[key] = {
            "total": sum(n for _, n, _ in rows),
            "by": {name: n for name, n, _ in rows},
            "last_at": max((at for _, _, at in rows), default=None),
        }
    return result


def _dbt_builds(con: duckdb.DuckDBPyConnection, existing: set[str]) -> dict[str, Any]:
    if "_cdc_dbt_builds" not in existing:
        return {"last": None, "last_success": None}
    columns = (
        "invocation_id, command, target, status, started_at, finished_at, elapsed_s, selection, "
        "counts, message, trigger, host"
    )
    last = _rows(con, f"select {columns} from lake.staging._cdc_dbt_builds order by finished_at desc limit 1")
    ok = _rows(
        con,
        f"select {columns} from lake.staging._cdc_dbt_builds where status = 'success' "
        "order by finished_at desc limit 1",
    )
    return {"last": last[0] if last else None, "last_success": ok[0] if ok else None}


# -------------------------------------------------------------------------------------- the broker
def probe_high_watermarks(
    settings: IngestSettings, landed: dict[tuple[str, int], int], timeout: float = PROBE_TIMEOUT_S
) -> tuple[dict[tuple[str, int], int], str | None]:
    """High watermark per partition of the matched topics, from a fetch response (not ListOffsets).

    Each partition is assigned at its landed position, so the fetch returns at most a few records (or an
    end-of-partition event); the fetch response carries the high watermark librdkafka caches.
    """
    config: dict[str, Any] = dict(settings.kafka.client)
    config.update(
        {
            "group.id": f"{settings.group_id}-status-probe",
            "enable.auto.commit": False,
            "enable.partition.eof": True,
            "auto.offset.reset": "earliest",
            "max.partition.fetch.bytes": 1024,
            "queued.max.messages.kbytes": 64,
            "socket.timeout.ms": int(timeout * 1000),
        }
    )
    quiet = logging.getLogger("ingest.ops.status.librdkafka")
    quiet.setLevel(logging.CRITICAL)
    try:
        consumer = Consumer(config, logger=quiet)
    except KafkaException as error:
        return {}, f"cannot create a consumer: {error}"
    try:
        try:
            metadata = consumer.list_topics(timeout=timeout)
        except KafkaException as error:
            return {}, f"broker {settings.kafka.bootstrap_servers} unreachable: {error.args[0].str()}"
        pattern = re.compile(settings.topics)
        partitions = sorted(
            {
                (topic, p)
                for topic, meta in metadata.topics.items()
                if pattern.search(topic) and meta.error is None
                for p in meta.partitions
            }
            | set(landed)
        )
        if not partitions:
            return {}, None
        consumer.assign([TopicPartition(t, p, landed.get((t, p), OFFSET_BEGINNING)) for t, p in partitions])
        seen: set[tuple[str, int]] = set()
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for message in consumer.consume(500, timeout=0.2):
                error = message.error()
                if error is None or error.code() == KafkaError._PARTITION_EOF:
                    seen.add((message.topic(), message.partition()))
            highs = {
                tp: consumer.get_watermark_offsets(TopicPartition(*tp), cached=True)[1] for tp in partitions
            }
            if all(h >= 0 for h in highs.values()) or len(seen) == len(partitions):
                break
        highs = {tp: consumer.get_watermark_offsets(TopicPartition(*tp), cached=True)[1] for tp in partitions}
        missing = [f"{t}[{p}]" for (t, p), h in highs.items() if h < 0]
        problem = f"no fetch response within {timeout:.0f} s for {', '.join(missing)}" if missing else None
        return {tp: h for tp, h in highs.items() if h >= 0}, problem
    finally:
        consumer.close()


# ------------------------------------------------------------------------------------------ status
def collect_status(
    settings: IngestSettings, con: duckdb.DuckDBPyConnection, probe_broker: bool = True
) -> dict[str, Any]:
    """Everything `ingest status` shows, as plain data (datetimes stay datetimes)."""
    now = datetime.now(UTC)
    existing = _existing_tables(con)
    landed = _landed_positions(con, existing)
    problems: list[str] = []
    highs: dict[tuple[str, int], int] = {}
    if probe_broker:
        highs, problem = probe_high_watermarks(settings, {tp: r["landed"] for tp, r in landed.items()})
        if problem:
            problems.append(problem)
    ingester = _runs(con, existing, settings.target)
    members = _members(con, existing, ingester["runs"])
    owners = {tp: m["run_id"] for m in members for tp in m["partitions"]}
    partitions = []
    for topic, partition in sorted(set(landed) | set(highs)):
        row = landed.get((topic, partition), {})
        position = row.get("landed", 0)
        high = highs.get((topic, partition))
        partitions.append(
            {
                "topic": topic,
                "partition": partition,
                "landed_offset": position,
                "high_watermark": high,
                "lag": None if high is None else high - position,
                "last_commit": row.get("last_commit"),
                "owner": owners.get((topic, partition)),
            }
        )
    lost = [p for p in partitions if p["lag"] is not None and p["lag"] < 0]
    for p in lost:
        problems.append(
            f"{p['topic']}[{p['partition']}]: the lake has landed up to {p['landed_offset']} but the "
            f"broker's log ends at {p['high_watermark']} (the broker lost data)"
        )
    last_batch = _last_batch(con, existing)
    if last_batch is not None:
        last_batch["age_s"] = (now - last_batch["committed_at"]).total_seconds()
    return {
        "generated_at": now,
        "target": settings.target,
        "lake": {"catalog": _describe_catalog(settings), "data_path": settings.data_path},
        "broker": settings.kafka.bootstrap_servers,
        "topics": settings.topics,
        "ingester": ingester,
        "members": members,
        "last_batch": last_batch,
        "partitions": partitions,
        "total_lag": sum(p["lag"] for p in partitions if p["lag"] is not None and p["lag"] > 0),
        "tables": _tables(con, existing, now),
        **_failed_counts(con, existing),
        "dbt": _dbt_builds(con, existing),
        "problems": problems,
    }


def _describe_catalog(settings: IngestSettings) -> str:
    if settings.lake.catalog == "embedded":
        return f"embedded ({settings.state_dir / 'catalog'}, database {settings.lake.catalog_database})"
    return scrub(settings.lake.catalog)


def jsonable(value: Any) -> Any:
    if isinstance(value, datetime):
        return value.isoformat()
    if isinstance(value, dict):
        return {str(k): jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [jsonable(v) for v in value]
    return value


# --------------------------------------------------------------------------------------- rendering
def _ago(seconds: float | None) -> str:
    if seconds is None:
        return "-"
    if seconds < 120:
        return f"{seconds:.1f} s"
    if seconds < 7200:
        return f"{seconds / 60:.1f} min"
    if seconds < 172800:
        return f"{seconds / 3600:.1f} h"
    return f"{seconds / 86400:.1f} d"


def _when(ts: datetime | None, now: datetime) -> str:
    if ts is None:
        return "-"
    return f"{ts.astimezone(UTC):%Y-%m-%d %H:%M:%S} UTC ({_ago((now - ts).total_seconds())} ago)"


def _table_state(table: dict[str, Any]) -> str:
    if table["quarantined"]:
        return f"[red]quarantined: {table['quarantined']}[/]"
    if table["untyped_columns"]:
        return f"[yellow]{len(table['untyped_columns'])} columns not in the types file[/]"
    return "[green]ok[/]"


def render(status: dict[str, Any], console: Any) -> None:
    """Print the status on one screen with rich."""
    from rich.table import Table

    now: datetime = status["generated_at"]
    ingester = status["ingester"]
    if ingester["running"]:
        runs = ", ".join(
            f"pid {r['pid']} on {r['host']} since {_when(r['started_at'], now)}"
            + (f", metrics :{r['metrics_port']}" if r["metrics_port"] else "")
            + (f", dbt build every {r['dbt_build_every']}" if r["dbt_build_every"] else "")
            for r in ingester["runs"]
        )
        state = f"[green]running[/] ({runs})"
    elif ingester["running"] is None:
        r = ingester["runs"][0]
        state = f"[yellow]unknown[/]: a run on {r['host']} (pid {r['pid']}) has not recorded a stop"
    else:
        last = ingester["last_run"]
        state = "[red]not running[/]" + (
            f" (last run {last['state']}, started {_when(last['started_at'], now)})"
            if last
            else " (never ran)"
        )
    console.print(f"[bold]ingest status[/] target [bold]{status['target']}[/]   ingester {state}")
    console.print(
        f"broker {status['broker']}  topics {status['topics']!r}  catalog {status['lake']['catalog']}",
        highlight=False,
    )
    batch = status["last_batch"]
    if batch:
        console.print(
            f"last batch #{batch['batch_id']}: {batch['records']} records ({batch['change_rows']} rows, "
            f"{batch['dead_letters']} dead letters, {batch['quarantined']} quarantined) landed in "
            f"{batch['landing_ms']:.0f} ms, committed {_when(batch['committed_at'], now)}"
        )
    else:
        console.print("last batch: none landed yet")

    lag = Table(
        "topic",
        "partition",
        "landed offset",
        "high watermark",
        "lag",
        "last commit",
        title=f"Lag (total {status['total_lag']})",
    )
    for p in status["partitions"]:
        value = "?" if p["lag"] is None else str(p["lag"])
        color = "red" if p["lag"] and p["lag"] < 0 else ("yellow" if p["lag"] else "green")
        lag.add_row(
            p["topic"],
            str(p["partition"]),
            str(p["landed_offset"]),
            "?" if p["high_watermark"] is None else str(p["high_watermark"]),
            f"[{color}]{value}[/]",
            "-" if p["last_commit"] is None else f"{_ago((now - p['last_commit']).total_seconds())} ago",
        )
    console.print(lag)

    if status["members"]:
        members = Table("member (run)", "host", "pid", "partitions", "last batch", title="Members")
        for m in status["members"]:
            last = m["last_batch"]
            members.add_row(
                m["run_id"],
                m["host"],
                str(m["pid"]),
                str(len(m["partitions"])),
                "-" if last is None else f"#{last['batch_id']} {_when(last['committed_at'], now)}",
            )
        console.print(members)
        unowned = [p for p in status["partitions"] if p["owner"] is None]
        if unowned:
            shown = ", ".join(f"{p['topic']}[{p['partition']}]" for p in unowned[:10])
            console.print(
                f"[yellow]owned by no member:[/] {len(unowned)} partitions ({shown})", highlight=False
            )

    tables = Table("staging table", "rows", "newest source event", "freshness", "state", title="Freshness")
    for t in status["tables"]:
        tables.add_row(
            t["table_name"],
            str(t["rows"]),
            "-"
            if t["newest_source_ts"] is None
            else f"{t['newest_source_ts'].astimezone(UTC):%Y-%m-%d %H:%M:%S}",
            _ago(t["freshness_s"]),
            _table_state(t),
        )
    console.print(tables)
    untyped = [f"{t['table_name']}.{c}" for t in status["tables"] for c in t["untyped_columns"]]
    if untyped:
        console.print(
            f"[yellow]not in the types file[/] (inferred from values): {', '.join(untyped)}; run "
            "`ingest types pull` again and commit the file",
            highlight=False,
        )

    for key, label in (("dead_letters", "dead letters"), ("quarantine", "quarantined events")):
        info = status[key]
        detail = ", ".join(f"{name}: {n}" for name, n in info["by"].items())
        color = "red" if info["total"] else "green"
        console.print(
            f"{label}: [{color}]{info['total']}[/]"
            + (f" ({detail}; last {_when(info['last_at'], now)})" if detail else "")
        )

    build = status["dbt"]["last"]
    if build is None:
        console.print("last dbt build: none recorded")
    else:
        color = "green" if build["status"] == "success" else "red"
        counts = build["counts"] or {}
        if isinstance(counts, str):
            counts = json.loads(counts)
        counted = ", ".join(f"{n} {k}" for k, n in sorted(counts.items()))
        console.print(
            f"last dbt {build['command']}: [{color}]{build['status']}[/] "
            f"finished {_when(build['finished_at'], now)} in {build['elapsed_s']:.1f} s ({build['trigger']}"
            + (f", --select {build['selection']}" if build["selection"] else "")
            + (f"; {counted}" if counted else "")
            + ")"
            + (f": {build['message']}" if build["message"] and build["status"] != "success" else "")
        )
        ok = status["dbt"]["last_success"]
        if build["status"] != "success":
            console.print(f"last successful dbt build: {_when(ok['finished_at'], now) if ok else 'none'}")
    for problem in status["problems"]:
        console.print(f"[red]problem:[/] {problem}", highlight=False)
