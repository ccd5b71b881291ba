"""A micro-batch: decoded records grouped for landing, plus the offsets they advance. Pure, no I/O.

Change rows are kept per staging table as `ChangeRows`: consecutive rows that share one column layout (one
Connect schema version, or a compatible set of inferred columns). A schema change inside a batch starts new
ones, so the sink can evolve the table between two inserts of the same transaction. The SQL decoder hands
over `ChangeRows` whole; rows the Python decoder makes one by one gather in an open `Segment` of their table,
which becomes `ChangeRows` when it closes (another layout or a chunk decoded in SQL follows, or the batch
closes), so the sink sees one kind of rows.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import orjson
import pyarrow as pa

from ingest.core import contract
from ingest.core.decode import (
    ChangeRow,
    DeadLetter,
    Decoded,
    MessageRecord,
    Skipped,
    TransactionRecord,
)
from ingest.core.rows import ChangeRows, Origin
from ingest.core.typemap import ColumnType, TableSchema


@dataclass
class Segment:
    """Python-decoded change rows of one staging table sharing one column layout, until they close."""

    table: str
    mode: str
    columns: dict[str, ColumnType]
    rows: list[ChangeRow] = field(default_factory=list)
    key_columns: list[str] | None = None
    schema: TableSchema | None = None  # the schema it was opened with (the one Connect schema version)

    def accepts(self, row: ChangeRow) -> bool:
        """Whether `row` can join this segment (widening the inferred column set if needed)."""
        if row.schema.mode != self.mode:
            return False
        if self.mode != "inferred" or row.schema is self.schema:
            # Connect (or declared by the types file): one schema version per segment. Inferred: the
            # segment's columns already hold the columns of the schema it was opened with (the common case,
            # checked first: it is per event).
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

    def close(self) -> ChangeRows:
        """The rows, columnar. Rows Arrow refuses (a value the decoder let through by mistake) are set
        apart with the reason, so that one bad value costs one dead letter instead of the whole batch."""
        kept: Segment = self
        refused: list[tuple[ChangeRow, str]] = []
        try:
            arrow = _arrow(self)
        except _UNBUILDABLE:
            kept, refused = split_unbuildable_rows(self)
            arrow = _arrow(kept)
        first = self.rows[0]
        return ChangeRows(
            table=self.table,
            mode=self.mode,
            columns=self.columns,
            schema=self.schema or first.schema,
            origin=Origin(first.record.topic, first.source_schema, first.source_table),
            arrow=arrow,
            records=[row.record for row in self.rows],
            key_columns=self.key_columns,
            refused=[(row.record, reason) for row, reason in refused],
        )


def _unify_inferred(a: ColumnType, b: ColumnType) -> ColumnType | None:
    types = {a.duckdb_type, b.duckdb_type}
    if types == {"BIGINT", "DOUBLE"}:
        return a if a.duckdb_type == "DOUBLE" else b
    return None


@dataclass
class Batch:
    # Numbered by the sink inside the batch's commit (ids grow in commit order across all members).
    batch_id: int = 0
    segments: dict[str, list[ChangeRows]] = field(default_factory=dict)  # complete once `close()` ran
    transactions: list[TransactionRecord] = field(default_factory=list)
    messages: list[MessageRecord] = field(default_factory=list)
    dead_letters: list[DeadLetter] = field(default_factory=list)
    skipped: dict[str, int] = field(default_factory=dict)
    next_offsets: dict[tuple[str, int], int] = field(default_factory=dict)
    # The lake's positions of the batch's partitions when it was handed to the writer (None: nothing landed
    # yet); the batch commits only if they are still the lake's (another member may have landed them).
    started_from: dict[tuple[str, int], int | None] | None = None
    size: int = 0
    change_rows: int = 0
    # Per table, its last segment while it takes rows decoded in Python (its ChangeRows come after the
    # table's others in `segments` when it closes).
    _open: dict[str, Segment] = field(default_factory=dict, repr=False)

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

    def add_rows(self, rows: ChangeRows) -> None:
        """Change rows decoded as a whole (in SQL): after the table's rows so far."""
        for partition, offset in rows.next_offsets().items():
            self._advance(partition, offset)
        self.size += rows.count
        self.change_rows += rows.count
        self._close_segment(rows.table)
        self.segments.setdefault(rows.table, []).append(rows)

    def close(self) -> None:
        """Close every open segment: then `segments` holds every change row. Adding more is still fine."""
        for table in list(self._open):
            self._close_segment(table)

    def _close_segment(self, table: str) -> None:
        segment = self._open.pop(table, None)
        if segment is not None:
            self.segments[table].append(segment.close())

    def _advance(self, partition: tuple[str, int], next_offset: int) -> None:
        # Records of one partition may be added out of order (a chunk decoded in SQL, then a tombstone read
        # among them, decoded in Python): the position only moves forward.
        if next_offset > self.next_offsets.get(partition, -1):
            self.next_offsets[partition] = next_offset

    def _add_row(self, row: ChangeRow) -> None:
        self.change_rows += 1
        segment = self._open.get(row.table)
        if segment is None or not segment.accepts(row):
            self.segments.setdefault(row.table, [])  # the table's place in landing order: first seen
            self._close_segment(row.table)
            columns = {c.name: c for c in row.schema.columns}
            segment = self._open[row.table] = Segment(row.table, row.schema.mode, columns, schema=row.schema)
        segment.rows.append(row)
        if row.key_columns is not None and segment.key_columns is None:
            segment.key_columns = row.key_columns

    @property
    def empty(self) -> bool:
        return self.size == 0


# ------------------------------------------------------------------------------------ Arrow building
_UNBUILDABLE = (pa.ArrowException, ValueError, TypeError, OverflowError)


def _text(value: Any) -> Any:
    if value is None or isinstance(value, str):
        return value
    return orjson.dumps(value).decode()


def _arrow(segment: Segment) -> pa.Table:
    """The segment's rows as an Arrow table: source columns in transport types, then metadata."""
    rows = segment.rows
    arrays = {
        name: _image_array(segment, column, [row.values for row in rows])
        for name, column in segment.columns.items()
    }
    arrays.update(_metadata_arrays(rows))
    befores = [row.before for row in rows]
    if any(before is not None for before in befores):
        arrays[contract.BEFORE_IMAGE] = _before_array(segment, befores)
    return pa.table(arrays)


def _image_array(segment: Segment, column: ColumnType, images: list[dict[str, Any]]) -> pa.Array:
    values = [image.get(column.name) for image in images]
    if column.duckdb_type == "VARCHAR" and segment.mode == "inferred":
        values = [_text(v) for v in values]
    return pa.array(values, type=column.arrow_type)


def _before_array(segment: Segment, befores: list[dict[str, Any] | None]) -> pa.StructArray:
    """The before images of a keyless table's updates as one struct of the segment's columns (contract
    BEFORE_IMAGE), null where a row has none."""
    images = [before or {} for before in befores]
    columns = list(segment.columns.values())
    return pa.StructArray.from_arrays(
        [_image_array(segment, column, images) for column in columns],
        fields=[pa.field(column.name, column.arrow_type) for column in columns],
        mask=pa.array([before is None for before in befores]),
    )


def split_unbuildable_rows(segment: Segment) -> tuple[Segment, list[tuple[ChangeRow, str]]]:
    """The rows Arrow takes, and the others with the reason."""
    good: list[ChangeRow] = []
    bad: list[tuple[ChangeRow, str]] = []
    for row in segment.rows:
        try:
            _arrow(Segment(segment.table, segment.mode, segment.columns, [row]))
        except _UNBUILDABLE as error:
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
    "_cdc_position": lambda rows: [r.position for r in rows],
    "_cdc_tx_id": lambda rows: [r.tx_id for r in rows],
    "_cdc_snapshot": lambda rows: [r.snapshot for r in rows],
    "_cdc_unavailable_columns": lambda rows: [r.unavailable for r in rows],
    "_kafka_topic": lambda rows: [r.record.topic for r in rows],
    "_kafka_partition": lambda rows: [r.record.partition for r in rows],
    "_kafka_offset": lambda rows: [r.record.offset for r in rows],
    "_kafka_timestamp": lambda rows: [r.record.timestamp_ms for r in rows],
}
assert tuple(_METADATA_VALUES) == contract.DECODED_NAMES, "batch.py does not fill the contract's columns"


def _metadata_arrays(rows: list[ChangeRow]) -> dict[str, pa.Array]:
    return {
        column.name: pa.array(_METADATA_VALUES[column.name](rows), column.arrow_type)
        for column in contract.DECODED_METADATA
    }
