"""A micro-batch: decoded records grouped for landing, plus the offsets they advance. Pure, no I/O.

Change rows are kept per staging table in segments: consecutive rows that share one column layout (one
Connect schema version, or a compatible set of inferred columns). A schema change inside a batch starts a new
segment, so the sink can evolve the table between two inserts of the same transaction.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import orjson
import pyarrow as pa

from ingest.core import contract
from ingest.core.decode import (
    ChangeRow,
    DeadLetter,
    Decoded,
    MessageRecord,
    RawRecord,
    Skipped,
    TransactionRecord,
)
from ingest.core.typemap import ColumnType, TableSchema

if TYPE_CHECKING:
    from ingest.core.decode_sql import BulkRows


@dataclass
class Segment:
    table: str
    mode: str
    columns: dict[str, ColumnType]
    rows: list[ChangeRow] = field(default_factory=list)
    key_columns: list[str] | None = None
    schema: TableSchema | None = None  # the shared Connect schema version, for connect segments
    bulk: BulkRows | None = None  # rows decoded in SQL (ingest/bulk.py), already columnar; `rows` is empty

    @classmethod
    def of_bulk(cls, bulk: BulkRows) -> Segment:
        return cls(bulk.table, bulk.mode, bulk.columns, key_columns=bulk.key_columns, bulk=bulk)

    def records(self) -> list[RawRecord]:
        return self.bulk.records() if self.bulk is not None else [row.record for row in self.rows]

    def origin(self) -> tuple[str, str | None, str | None]:
        """(topic, source schema, source table) of the segment's first row."""
        if self.bulk is not None:
            return self.bulk.topic, self.bulk.source_schema, self.bulk.source_table
        first = self.rows[0]
        return first.record.topic, first.source_schema, first.source_table

    def accepts(self, row: ChangeRow) -> bool:
        """Whether `row` can join this segment (widening the inferred column set if needed)."""
        if self.bulk is not None or row.schema.mode != self.mode:
            return False
        if self.mode == "connect" or row.schema is self.schema:
            # Connect: one schema version per segment. Inferred: the segment's columns already hold the
            # columns of the schema it was opened with (the common case, checked first: it is per event).
            return row.schema is self.schema
        merged = dict(self.columns)
        for column in row.schema.columns:
            current = merged.get(column.name)
            if current is None:
                merged[column.name] = column
            elif current.duckdb_type != column.duckdb_type:
                unified = _unify_inferred(current, column)
                if unified is None:
                    return False
                merged[column.name] = unified
        self.columns = merged
        return True


def _unify_inferred(a: ColumnType, b: ColumnType) -> ColumnType | None:
    types = {a.duckdb_type, b.duckdb_type}
    if types == {"BIGINT", "DOUBLE"}:
        return a if a.duckdb_type == "DOUBLE" else b
    return None


@dataclass
class Batch:
    batch_id: int
    segments: dict[str, list[Segment]] = field(default_factory=dict)
    transactions: list[TransactionRecord] = field(default_factory=list)
    messages: list[MessageRecord] = field(default_factory=list)
    dead_letters: list[DeadLetter] = field(default_factory=list)
    skipped: dict[str, int] = field(default_factory=dict)
    next_offsets: dict[tuple[str, int], int] = field(default_factory=dict)
    size: int = 0
    change_rows: int = 0

    def add(self, decoded: Decoded) -> None:
        record = decoded.record
        self._advance((record.topic, record.partition), record.offset + 1)
        self.size += 1
        if isinstance(decoded, ChangeRow):
            self._add_row(decoded)
        elif isinstance(decoded, TransactionRecord):
            self.transactions.append(decoded)
        elif isinstance(decoded, MessageRecord):
            self.messages.append(decoded)
        elif isinstance(decoded, DeadLetter):
            self.dead_letters.append(decoded)
        elif isinstance(decoded, Skipped):
            self.skipped[decoded.reason] = self.skipped.get(decoded.reason, 0) + 1

    def add_bulk(self, bulk: BulkRows) -> None:
        """Change rows decoded in SQL: a segment of their own (a row decoded in Python opens another)."""
        for partition, offset in bulk.next_offsets.items():
            self._advance(partition, offset)
        count = bulk.arrow.num_rows
        self.size += count
        self.change_rows += count
        self.segments.setdefault(bulk.table, []).append(Segment.of_bulk(bulk))

    def _advance(self, partition: tuple[str, int], next_offset: int) -> None:
        # Records of one partition may be added out of order (a chunk decoded in SQL, then a tombstone read
        # among them, decoded in Python): the position only moves forward.
        if next_offset > self.next_offsets.get(partition, -1):
            self.next_offsets[partition] = next_offset

    def _add_row(self, row: ChangeRow) -> None:
        self.change_rows += 1
        segments = self.segments.setdefault(row.table, [])
        if not segments or not segments[-1].accepts(row):
            columns = {c.name: c for c in row.schema.columns}
            segments.append(Segment(row.table, row.schema.mode, columns, schema=row.schema))
        segment = segments[-1]
        segment.rows.append(row)
        if row.key_columns is not None and segment.key_columns is None:
            segment.key_columns = row.key_columns

    @property
    def empty(self) -> bool:
        return self.size == 0


# ------------------------------------------------------------------------------------ Arrow building
def _text(value: Any) -> Any:
    if value is None or isinstance(value, str):
        return value
    return orjson.dumps(value).decode()


def segment_arrow(segment: Segment, batch_id: int) -> pa.Table:
    """The segment's rows as an Arrow table: source columns in transport types, then metadata."""
    if segment.bulk is not None:
        arrow = segment.bulk.arrow
        return arrow.append_column("_batch_id", pa.array([batch_id] * arrow.num_rows, pa.int64()))
    rows = segment.rows
    arrays: dict[str, pa.Array] = {}
    for name, column in segment.columns.items():
        values = [row.values.get(name) for row in rows]
        if column.duckdb_type == "VARCHAR" and segment.mode == "inferred":
            values = [_text(v) for v in values]
        arrays[name] = pa.array(values, type=column.arrow_type)
    arrays.update(_metadata_arrays(rows, batch_id))
    return pa.table(arrays)


def split_unbuildable_rows(segment: Segment, batch_id: int) -> tuple[Segment, list[tuple[ChangeRow, str]]]:
    """Set apart the rows Arrow refuses (a value the decoder let through by mistake), with the reason, so
    that one bad value costs one dead letter instead of the whole batch."""
    good: list[ChangeRow] = []
    bad: list[tuple[ChangeRow, str]] = []
    for row in segment.rows:
        try:
            segment_arrow(Segment(segment.table, segment.mode, segment.columns, [row]), batch_id)
        except (pa.ArrowException, ValueError, TypeError, OverflowError) as error:
            bad.append((row, f"value does not fit its column type: {error}"))
        else:
            good.append(row)
    kept = Segment(segment.table, segment.mode, segment.columns, good, segment.key_columns, segment.schema)
    return kept, bad


# The decoded metadata of a Python-decoded row, per contract column (`contract.DECODED_METADATA`).
_METADATA_VALUES: dict[str, Callable[[list[ChangeRow]], list[Any]]] = {
    "_cdc_op": lambda rows: [r.op for r in rows],
    "_cdc_deleted": lambda rows: [r.op == "d" for r in rows],
    "_cdc_source_ts": lambda rows: [r.source_ts_us for r in rows],
    "_cdc_lsn": lambda rows: [r.lsn for r in rows],
    "_cdc_tx_id": lambda rows: [r.tx_id for r in rows],
    "_cdc_snapshot": lambda rows: [r.snapshot for r in rows],
    "_cdc_unavailable_columns": lambda rows: [r.unavailable for r in rows],
    "_kafka_topic": lambda rows: [r.record.topic for r in rows],
    "_kafka_partition": lambda rows: [r.record.partition for r in rows],
    "_kafka_offset": lambda rows: [r.record.offset for r in rows],
    "_kafka_timestamp": lambda rows: [r.record.timestamp_ms for r in rows],
}
assert tuple(_METADATA_VALUES) == contract.DECODED_NAMES, "batch.py does not fill the contract's columns"


def _metadata_arrays(rows: list[ChangeRow], batch_id: int) -> dict[str, pa.Array]:
    arrays = {
        column.name: pa.array(_METADATA_VALUES[column.name](rows), column.arrow_type)
        for column in contract.DECODED_METADATA
    }
    arrays[contract.BATCH_ID.name] = pa.array([batch_id] * len(rows), contract.BATCH_ID.arrow_type)
    return arrays
