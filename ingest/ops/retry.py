"""`ingest dead-letters list|show|retry`: inspect dead-lettered and quarantined events, reprocess them.

A failed event is identified by its kind and Kafka position: `dl:<topic>:<partition>:<offset>` (did not
decode) or `q:<topic>:<partition>:<offset>` (its table is quarantined). A retry decodes the kept raw bytes
again with the current decoder and lands them through the ingester's own sink, in ONE DuckLake transaction
with the resolution rows of the letters it retried (see `deadletters.RESOLUTIONS_TABLE`): after a kill -9 the
event has landed and its letter is resolved, or neither. An event that fails again is dead-lettered (or
quarantined) again in that transaction, with the new reason, and stays open.

Retrying a quarantined table (`--table`) lifts its quarantine first, then lands its kept events in their
order; if the schema change still cannot be followed the table is quarantined again. The retried rows get a
new batch id above every landed one (dbt's incremental models pick them up), and the transaction gives
staging a new generation, so a running ingester reloads its table state and batch ids (`offsets.Generation`).
For quarantine retries the running ingester is paused first, so that no event of the table lands between
the quarantined ones and the retry.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime

import duckdb
import orjson
import pyarrow as pa

from ingest.core import contract, offsets
from ingest.core.batch import Batch
from ingest.core.config import IngestSettings
from ingest.core.consumer import decoder_for
from ingest.core.deadletters import DEAD_LETTERS_TABLE, QUARANTINE_TABLE, RESOLUTIONS_TABLE
from ingest.core.decode import DeadLetter, RawRecord, Skipped
from ingest.core.lake import insert_arrow
from ingest.core.ownership import Member
from ingest.core.sink import LakeSink

KINDS = {"dl": DEAD_LETTERS_TABLE, "q": QUARANTINE_TABLE}
PAUSE_GRACE_S = 2.0


class RetryError(RuntimeError):
    pass


@dataclass(frozen=True)
class FailedEvent:
    kind: str  # dl | q
    table_name: str | None
    record: RawRecord
    error: str
    failed_at: datetime
    batch_id: int
    resolution: str | None = None  # outcome, if resolved

    @property
    def id(self) -> str:
        return f"{self.kind}:{self.record.topic}:{self.record.partition}:{self.record.offset}"


def parse_id(text: str) -> tuple[str, str, int, int]:
    kind, _, rest = text.partition(":")
    topic, _, position = rest.rpartition(":")
    topic, _, partition = topic.rpartition(":")
    if kind not in KINDS or not topic or not partition.isdigit() or not position.isdigit():
        raise RetryError(
            f"not a dead-letter id: {text!r} (expected dl:<topic>:<partition>:<offset> or q:...)"
        )
    return kind, topic, int(partition), int(position)


def _headers(text: str | None) -> list[tuple[str, bytes | None]] | None:
    if not text:
        return None
    return [(name, None if value is None else value.encode()) for name, value in orjson.loads(text)]


def load_failed(con: duckdb.DuckDBPyConnection, include_resolved: bool = False) -> list[FailedEvent]:
    """Every dead letter and quarantined event, open ones only unless asked, in Kafka order."""
    events: list[FailedEvent] = []
    for kind, table in KINDS.items():
        table_name = "table_name" if kind == "q" else "null"
        rows = con.execute(
            f"""select {table_name}, f.topic, f."partition", f."offset", f."key", f."value", f.headers,
                       epoch_ms(f.kafka_timestamp), f.error, f.failed_at, f.batch_id, r.outcome
                from {table} as f
                left join {RESOLUTIONS_TABLE} as r
                  on r.kind = '{kind}' and r.topic = f.topic and r."partition" = f."partition"
                 and r."offset" = f."offset" and r.failed_at = f.failed_at
                order by f.topic, f."partition", f."offset", f.failed_at"""
        ).fetchall()
        for name, topic, partition, offset, key, value, headers, ts, error, failed_at, batch, outcome in rows:
            if outcome is not None and not include_resolved:
                continue
            record = RawRecord(topic, partition, offset, key, value, _headers(headers), ts)
            events.append(FailedEvent(kind, name, record, error, failed_at, batch, outcome))
    return events


def select_events(
    events: Sequence[FailedEvent], ids: Sequence[str] = (), table: str | None = None, everything: bool = False
) -> list[FailedEvent]:
    if not ids and table is None and not everything:
        raise RetryError("say which: --ids ID ..., --table TABLE or --all")
    wanted = {parse_id(i)[:4] for i in ids}
    chosen = [
        e
        for e in events
        if everything
        or (e.kind, e.record.topic, e.record.partition, e.record.offset) in wanted
        or (table is not None and e.kind == "q" and e.table_name == table)
    ]
    missing = wanted - {(e.kind, e.record.topic, e.record.partition, e.record.offset) for e in chosen}
    if missing:
        raise RetryError(
            f"no open dead letter with id {', '.join(f'{k}:{t}:{p}:{o}' for k, t, p, o in missing)}"
        )
    return chosen


def show_bytes(data: bytes | None, limit: int = 4000) -> str:
    """Raw bytes for a terminal: text with control characters escaped if it is UTF-8, else a hex dump."""
    if data is None:
        return "(null)"
    head = data[:limit]
    more = f"\n... {len(data) - limit} more bytes" if len(data) > limit else ""
    try:
        text = head.decode("utf-8")
    except UnicodeDecodeError:
        lines = [
            f"{i:08x}  {head[i : i + 16].hex(' '):<47}  "
            + "".join(chr(b) if 32 <= b < 127 else "." for b in head[i : i + 16])
            for i in range(0, len(head), 16)
        ]
        return "(not UTF-8; hex)\n" + "\n".join(lines) + more
    escaped = "".join(c if c.isprintable() or c in "\n\t" else repr(c)[1:-1] for c in text)
    return escaped + more


@dataclass
class RetryResult:
    landed: list[str]
    failed_again: list[tuple[str, str]]
    skipped: list[str]
    batch_id: int


class Retry:
    def __init__(self, settings: IngestSettings, connect: Callable[[], duckdb.DuckDBPyConnection]) -> None:
        self.settings = settings
        self.connect = connect

    def run(self, ids: Sequence[str] = (), table: str | None = None, everything: bool = False) -> RetryResult:
        sink = LakeSink.for_lake(
            self.connect, self.settings.lake, member=Member.this_process(self.settings.group_id)
        )
        try:
            sink.open()
            chosen = select_events(load_failed(sink.con), ids, table, everything)
            if not chosen:
                return RetryResult([], [], [], 0)
            unquarantine = sorted({e.table_name for e in chosen if e.kind == "q" and e.table_name})
            live = None
            if unquarantine:
                live = self._pause(sink)
            try:
                return self._land(sink, chosen, unquarantine)
            except BaseException:
                if live is not None:
                    offsets.write_generation(sink.con, live)
                raise
        finally:
            sink.close()

    def _pause(self, sink: LakeSink) -> offsets.Generation:
        """Stop a running ingester from landing (its in-flight batch finishes), so the table's order holds."""
        live = offsets.read_generation(sink.con)
        offsets.write_generation(sink.con, offsets.Generation(live.name, time.time() + 60))
        time.sleep(max(PAUSE_GRACE_S, 2 * self.settings.batch.max_ms / 1000))
        sink.open()  # the state and positions after the in-flight batch
        sink.holds_pause = True
        return live

    def _land(self, sink: LakeSink, chosen: list[FailedEvent], unquarantine: list[str]) -> RetryResult:
        decoder = decoder_for(self.settings)
        batch = Batch()  # numbered by the sink inside its commit, before `resolve` runs
        decoded_by_id = {}
        for event in sorted(chosen, key=lambda e: (e.record.topic, e.record.partition, e.record.offset)):
            decoded = decoder.decode(event.record)
            decoded_by_id[event.id] = decoded
            batch.add(decoded)
        positions = dict(batch.next_offsets)
        batch.next_offsets = {}  # a retry moves no position: the ingester read these records long ago
        for name in unquarantine:
            entry = sink.state.tables.get(name)
            if entry is not None:
                entry.quarantined = None
                entry.dirty = True
        outcomes: dict[str, tuple[str, str | None]] = {}
        generation = sink.generation or offsets.Generation("")

        def resolve(con: duckdb.DuckDBPyConnection) -> None:
            outcomes.clear()
            batch_id = batch.batch_id
            again = {
                (kind, t, p, o): error
                for kind, table in KINDS.items()
                for t, p, o, error in con.execute(
                    f'select topic, "partition", "offset", error from {table} where batch_id = ?', [batch_id]
                ).fetchall()
            }
            for event in chosen:
                position = (event.record.topic, event.record.partition, event.record.offset)
                decoded = decoded_by_id[event.id]
                failed = again.get(("dl", *position)) or again.get(("q", *position))
                if failed is not None:
                    outcomes[event.id] = ("failed again", failed)
                elif isinstance(decoded, Skipped):
                    outcomes[event.id] = ("skipped", decoded.reason)
                elif isinstance(decoded, DeadLetter):  # not expected: dead letters land in this batch
                    outcomes[event.id] = ("failed again", decoded.error)
                else:
                    outcomes[event.id] = ("landed", None)
            _insert_resolutions(con, chosen, outcomes, batch_id)
            # the batch id advances like a landed batch (positions stay): dbt sees the rows, ingesters resync
            _advance_batch_id(con, positions, batch_id)
            offsets.write_generation(
                con, offsets.Generation(generation.name.split("+retry")[0] + f"+retry{batch_id}")
            )

        sink.before_commit = resolve
        try:
            sink.write(batch)
        finally:
            sink.before_commit = None
        return RetryResult(
            landed=[i for i, (o, _) in outcomes.items() if o == "landed"],
            failed_again=[(i, d or "") for i, (o, d) in outcomes.items() if o == "failed again"],
            skipped=[i for i, (o, _) in outcomes.items() if o == "skipped"],
            batch_id=batch.batch_id,
        )


def _insert_resolutions(
    con: duckdb.DuckDBPyConnection,
    events: Sequence[FailedEvent],
    outcomes: dict[str, tuple[str, str | None]],
    batch_id: int,
) -> None:
    arrow = pa.table(
        {
            "kind": pa.array([e.kind for e in events], pa.string()),
            "topic": pa.array([e.record.topic for e in events], pa.string()),
            "partition": pa.array([e.record.partition for e in events], pa.int32()),
            "offset": pa.array([e.record.offset for e in events], pa.int64()),
            "failed_at": pa.array([e.failed_at for e in events], pa.timestamp("us", tz="UTC")),
            "outcome": pa.array([outcomes[e.id][0] for e in events], pa.string()),
            "detail": pa.array([outcomes[e.id][1] for e in events], pa.string()),
            "batch_id": pa.array([batch_id] * len(events), pa.int64()),
        }
    )
    insert_arrow(con, contract.RESOLUTIONS.qualified, arrow, extra=contract.RESOLUTIONS.at_insert)


def _advance_batch_id(
    con: duckdb.DuckDBPyConnection, positions: dict[tuple[str, int], int], batch_id: int
) -> None:
    """One `_cdc_offsets` row per retried partition at its unchanged position, under the retry's batch id."""
    stored = offsets.load_positions(con)
    current = {tp: stored.get(tp, next_offset) for tp, next_offset in positions.items()}
    arrow = offsets.positions_arrow(current, batch_id)
    insert_arrow(con, contract.OFFSETS.qualified, arrow, extra=contract.OFFSETS.at_insert)


def describe(event: FailedEvent) -> dict[str, object]:
    return {
        "id": event.id,
        "kind": "dead letter" if event.kind == "dl" else f"quarantined ({event.table_name})",
        "topic": event.record.topic,
        "partition": event.record.partition,
        "offset": event.record.offset,
        "kafka_timestamp": event.record.timestamp_ms,
        "reason": event.error,
        "failed_at": event.failed_at.isoformat(),
        "batch_id": event.batch_id,
        "resolution": event.resolution,
        "value_bytes": None if event.record.value is None else len(event.record.value),
    }
