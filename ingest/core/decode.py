"""Kafka records to decoded events: pure logic, no I/O.

`Decoder.decode(record)` returns exactly one of: a `ChangeRow` (lands in a staging table), a
`TransactionRecord`, a `MessageRecord`, a `Skipped` record (tombstones, heartbeats, schema-change topics) or a
`DeadLetter` with the reason. It never raises for bad input: whatever the bytes, the caller gets a result.

The schema half of a `schemas.enable=true` value is the same bytes for every event of a table version, so it
is parsed once and cached by those bytes; only the payload half is parsed per event.
"""

from __future__ import annotations

import json
import logging
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any, cast, overload

import orjson
from confluent_kafka import Message
from pydantic import ValidationError

from ingest.core import plain
from ingest.core.contract import BEFORE_IMAGE, METADATA_NAMES
from ingest.core.envelope import (
    UNAVAILABLE_VALUE,
    UNAVAILABLE_VALUE_BASE64,
    ChangeEvent,
    ConnectSchema,
    LogicalMessage,
    TransactionEvent,
)
from ingest.core.naming import TableNaming
from ingest.core.plain import CHANGE_OPS
from ingest.core.position import Position, lsn_position, source_position, transaction_id
from ingest.core.source_types import SourceTypes, TableTypes
from ingest.core.typemap import (
    SPECIAL_FLOATS,
    TYPE_CHECK_ONLY_CONVERTERS,
    ColumnType,
    TableSchema,
    TypeMappingError,
    infer_column,
    is_variable_scale_decimal,
    key_columns_from_connect,
    table_schema_from_connect,
)

log = logging.getLogger(__name__)

_RESERVED = {name.lower() for name in (*METADATA_NAMES, BEFORE_IMAGE)}
SCHEMA_PREFIX = b'{"schema":'
PAYLOAD_MARK = b',"payload":'
_MAX_CACHED_SCHEMAS = 1024
_plain_envelope = plain.ENVELOPE.python_check()
_plain_source = plain.SOURCE.python_check()
_plain_transaction = plain.TRANSACTION.python_check()
_INT64_MIN, _INT64_MAX = -(2**63), 2**63 - 1
# Image values orjson cannot have rounded: it reads an integer beyond 64 bits as a float (exactly up to 2**64,
# which Arrow then refuses for a 64-bit column), so only a float, or a float nested in an object or a list,
# sends the raw value through the exact (and slower) check.
_PLAIN_JSON_TYPES = frozenset({str, int, bool, type(None)})
# Strings whose meaning is not plain text when no schema says otherwise: they need the slow inference path.
SPECIAL_TEXT = SPECIAL_FLOATS | {UNAVAILABLE_VALUE, UNAVAILABLE_VALUE_BASE64}


# Not frozen: a frozen dataclass's __init__ costs ~1 us more per instance, and RawRecord and _Change are made
# once per event (docs/benchmarks.md). Nothing mutates them.
@dataclass(slots=True)
class RawRecord:
    """A Kafka record as the consumer hands it over (nothing parsed yet)."""

    topic: str
    partition: int
    offset: int
    key: bytes | None
    value: bytes | None
    headers: Sequence[tuple[str, bytes | None]] | None = None
    timestamp_ms: int | None = None


def connect_halves(value: bytes) -> tuple[bytes, bytes] | None:
    """(schema half, payload half) of a `{"schema":S,"payload":P}` value, found without parsing S: it ends
    at the first `,"payload":` when it is valid JSON (the caller checks). None for any other form."""
    if value.startswith(SCHEMA_PREFIX) and value.endswith(b"}"):
        mark = value.find(PAYLOAD_MARK)
        if mark > 0:
            return value[len(SCHEMA_PREFIX) : mark], value[mark + len(PAYLOAD_MARK) : -1]
    return None


def position(message: Message) -> tuple[str, int, int]:
    """(topic, partition, offset) of a consumed message. librdkafka sets all three on every record; only a
    client-level error can lack them, and then they read as ("", -1, -1)."""
    topic, partition, offset = message.topic(), message.partition(), message.offset()
    return topic or "", -1 if partition is None else partition, -1 if offset is None else offset


def to_record(message: Message) -> RawRecord:
    timestamp_type, timestamp = message.timestamp()
    topic, partition, offset = position(message)
    return RawRecord(
        topic=topic,
        partition=partition,
        offset=offset,
        key=message.key(),
        value=message.value(),
        # a consumed record's headers are (name, bytes | None) pairs; the str and dict forms are producers'
        headers=cast("Sequence[tuple[str, bytes | None]] | None", message.headers()),
        timestamp_ms=timestamp if timestamp_type else None,
    )


class MessageRecords(Sequence[RawRecord]):
    """Kafka messages seen as records, each made only when asked for: rows decoded in SQL need their
    records only to quarantine them, or for the key of their first."""

    __slots__ = ("_messages",)

    def __init__(self, messages: Sequence[Message]) -> None:
        self._messages = messages

    def __len__(self) -> int:
        return len(self._messages)

    @overload
    def __getitem__(self, index: int) -> RawRecord: ...
    @overload
    def __getitem__(self, index: slice) -> list[RawRecord]: ...
    def __getitem__(self, index: int | slice) -> RawRecord | list[RawRecord]:
        if isinstance(index, slice):
            return [to_record(m) for m in self._messages[index]]
        return to_record(self._messages[index])


@dataclass(frozen=True, slots=True)
class TopicKind:
    kind: str  # data | transaction | message | heartbeat | schema_change
    table: str | None = None  # staging table name, for data topics
    server: str | None = None  # the topic prefix (the connector's topic.prefix), for data topics


@dataclass(slots=True)
class ChangeRow:
    record: RawRecord
    table: str
    schema: TableSchema
    values: dict[str, Any]  # converted to the Arrow transport type of `schema`'s columns
    op: str
    source_ts_us: int | None
    lsn: int | None
    position: Position | None
    tx_id: str | None
    snapshot: bool
    unavailable: list[str]
    source_schema: str | None
    source_table: str | None
    key_columns: list[str] | None  # set on the first event of a table version only
    # The before image of an update of a table without a key (record key null), typed like `values`: the
    # row it replaces, which only the whole image identifies (contract.BEFORE_IMAGE). None otherwise.
    before: dict[str, Any] | None = None


@dataclass(frozen=True, slots=True)
class TransactionRecord:
    record: RawRecord
    event: TransactionEvent


@dataclass(frozen=True, slots=True)
class MessageRecord:
    record: RawRecord
    message: LogicalMessage


@dataclass(frozen=True, slots=True)
class Skipped:
    record: RawRecord
    reason: str  # tombstone | heartbeat | schema_change


@dataclass(frozen=True, slots=True)
class DeadLetter:
    record: RawRecord
    error: str


Decoded = ChangeRow | TransactionRecord | MessageRecord | Skipped | DeadLetter


class DecodeError(ValueError):
    pass


@dataclass(slots=True)
class _Change:
    """What the landing needs of a change event, from `ChangeEvent` or from the structural fast path."""

    op: str
    row: dict[str, Any] | None
    source_ts_us: int | None
    lsn: int | None
    position: Position | None
    tx_id: str | None
    snapshot: bool
    source_schema: str | None
    source_table: str | None
    before: dict[str, Any] | None = None  # of an update (u), where the connector sends it


def _from_model(event: ChangeEvent) -> _Change:
    source = event.source
    fields = source.model_dump(by_alias=True)
    transaction = None if event.transaction is None else event.transaction.model_dump()
    return _Change(
        event.op,
        event.row,
        source.commit_ts_us,
        source.lsn,
        source_position(fields, transaction),
        transaction_id(fields, transaction),
        source.is_snapshot,
        source.source_schema,
        source.table,
        event.before if event.op == "u" else None,
    )


def _fast_change(payload: dict[str, Any]) -> _Change | None:
    """The change event of `payload` when it is plain (`ingest.core.plain`: every field the model checks
    has exactly an expected JSON type); None for anything else, which then goes through the pydantic model
    (same result, or its error).

    Equivalent to `ChangeEvent.model_validate` on the inputs it accepts, at a fraction of the cost: this is
    the per-event hot path (see docs/benchmarks.md)."""
    if not _plain_envelope(payload) or payload["op"] not in CHANGE_OPS:
        return None
    transaction = payload.get("transaction")
    if transaction is not None and not _plain_transaction(transaction):
        return None
    source = payload["source"]
    if not _plain_source(source):
        return None
    snapshot = source.get("snapshot")
    op = payload["op"]
    tx_id = source.get("txId")
    ts_us = source.get("ts_us")
    source_ts_ms = source.get("ts_ms")
    if ts_us is None and source_ts_ms is not None:
        ts_us = source_ts_ms * 1000
    lsn = source.get("lsn")
    return _Change(
        op,
        payload.get("before") if op == "d" else payload.get("after"),
        ts_us,
        lsn,
        # PostgreSQL's, the common case, first; every other connector's by its rules
        lsn_position(lsn) or source_position(source, transaction),
        str(tx_id) if tx_id is not None else transaction_id(source, transaction),
        snapshot if type(snapshot) is bool else snapshot not in (None, "false"),
        source.get("schema"),
        source.get("table"),
        payload.get("before") if op == "u" else None,
    )


def classify_topic(topic: str, naming: TableNaming | None = None) -> TopicKind:
    """Debezium's topic naming: `<prefix>.<schema>.<table>` for data, `<prefix>.transaction`,
    `<prefix>.message`, `__debezium-heartbeat.<prefix>`, and `<prefix>` alone for schema changes."""
    if topic.startswith("__debezium-heartbeat"):
        return TopicKind("heartbeat")
    parts = topic.split(".")
    if len(parts) == 1:
        return TopicKind("schema_change")
    if len(parts) == 2 and parts[1] in ("transaction", "message"):
        return TopicKind(parts[1])
    return TopicKind("data", (naming or TableNaming()).table_of(topic), parts[0])


def colliding_topics(topics: Iterable[str], naming: TableNaming) -> dict[str, list[str]]:
    """The staging tables that more than one of `topics` would land in, with those topics."""
    by_table: dict[str, set[str]] = {}
    for topic in topics:
        kind = classify_topic(topic, naming)
        if kind.kind == "data" and kind.table is not None:
            by_table.setdefault(kind.table, set()).add(topic)
    return {table: sorted(found) for table, found in sorted(by_table.items()) if len(found) > 1}


def _is_unavailable(value: Any) -> bool:
    if isinstance(value, str):
        return value in (UNAVAILABLE_VALUE, UNAVAILABLE_VALUE_BASE64)
    if isinstance(value, list) and len(value) == 1:
        return _is_unavailable(value[0])
    return False


def _check_column_names(names: Sequence[str]) -> None:
    seen: set[str] = set()
    for name in names:
        if not name:
            raise DecodeError("a column has an empty name")
        folded = name.lower()
        if folded in _RESERVED:
            raise DecodeError(f"column {name!r} collides with the ingester's metadata column")
        if folded in seen:
            raise DecodeError(f"column {name!r} differs from another column only by case")
        if "\x00" in name:
            raise DecodeError("a column name contains a NUL character")
        seen.add(folded)


def _error_text(error: Exception) -> str:
    if isinstance(error, ValidationError):
        parts = [f"{'.'.join(str(p) for p in e['loc']) or '<root>'}: {e['msg']}" for e in error.errors()[:5]]
        return "envelope does not validate: " + "; ".join(parts)
    return f"{type(error).__name__}: {error}"


class Decoder:
    """Decodes records; holds only caches (parsed schemas, inferred types), never results."""

    def __init__(
        self,
        skip_heartbeats: bool = True,
        skip_schema_changes: bool = True,
        source_types: SourceTypes | None = None,
        naming: TableNaming | None = None,
    ) -> None:
        self.skip_heartbeats = skip_heartbeats
        self.skip_schema_changes = skip_schema_changes
        self.naming = naming or TableNaming()
        # The types file's columns, for events without a Connect schema (source_types.py).
        self.source_types = source_types or SourceTypes()
        self._declared_schemas: dict[
            tuple[str | None, str, str, tuple[str, ...], TableSchema | None], TableSchema
        ] = {}
        self._connect_schemas: dict[bytes, TableSchema] = {}
        self._inferred_schemas: dict[tuple[tuple[str, str], ...], TableSchema] = {}
        self._inferred_columns: dict[tuple[str, str], ColumnType | None] = {}
        self._table_versions: dict[str, TableSchema] = {}
        self._inferred_by_shape: dict[tuple[tuple[str, ...], tuple[type, ...]], tuple[TableSchema, bool]] = {}
        self._topic_kinds: dict[str, TopicKind] = {}

    # --------------------------------------------------------------------------------- entry point
    def decode(self, record: RawRecord) -> Decoded:
        try:
            return self._decode(record)
        except (DecodeError, TypeMappingError, ValidationError, ValueError, TypeError, KeyError) as error:
            return DeadLetter(record, _error_text(error))
        except RecursionError:
            return DeadLetter(record, "value is nested too deeply to decode")

    def _decode(self, record: RawRecord) -> Decoded:
        kind = self.topic_kind(record.topic)
        if kind.kind == "heartbeat" and self.skip_heartbeats:
            return Skipped(record, "heartbeat")
        if kind.kind == "schema_change" and self.skip_schema_changes:
            return Skipped(record, "schema_change")
        if record.value is None:
            return Skipped(record, "tombstone")
        schema_bytes, payload = self._split(record.value)
        if payload is None:
            return Skipped(record, "tombstone")
        if not isinstance(payload, dict):
            raise DecodeError(f"value is JSON {type(payload).__name__}, not an object")
        if kind.kind in ("transaction", "message"):
            _reject_wide_integers(record.value)
        if kind.kind == "transaction":
            return TransactionRecord(record, TransactionEvent.model_validate(payload))
        if kind.kind == "message":
            return MessageRecord(record, LogicalMessage.model_validate(payload))
        if kind.kind != "data" or kind.table is None:
            raise DecodeError(f"records of {kind.kind} topics are not landed")
        return self._change_row(record, kind.table, kind.server, schema_bytes, payload)

    # -------------------------------------------------------------------------------------- parsing
    def _split(self, value: bytes) -> tuple[bytes | None, Any]:
        """(schema bytes or None, parsed payload). Splits `{"schema":S,"payload":P}` without parsing S."""
        halves = connect_halves(value)
        if halves is not None:
            schema_bytes, payload = halves
            if schema_bytes in self._connect_schemas or self._parses(schema_bytes):
                return schema_bytes, orjson.loads(payload)
        try:
            document = orjson.loads(value)
        except orjson.JSONDecodeError as error:
            raise DecodeError(f"value is not valid JSON: {error}") from None
        # len() first: building the key set of every schemaless envelope costs more than the whole check
        if (
            isinstance(document, dict)
            and len(document) == 2
            and "schema" in document
            and "payload" in document
        ):
            return orjson.dumps(document["schema"]), document["payload"]
        return None, document

    @staticmethod
    def _parses(candidate: bytes) -> bool:
        try:
            orjson.loads(candidate)
        except orjson.JSONDecodeError:
            return False
        return True

    def _connect_schema(self, schema_bytes: bytes) -> TableSchema:
        cached = self._connect_schemas.get(schema_bytes)
        if cached is None:
            envelope_schema = ConnectSchema.model_validate(orjson.loads(schema_bytes))
            cached = table_schema_from_connect(envelope_schema)
            _check_column_names([c.name for c in cached.columns])
            if len(self._connect_schemas) >= _MAX_CACHED_SCHEMAS:
                self._connect_schemas.clear()
            self._connect_schemas[schema_bytes] = cached
        return cached

    # ---------------------------------------------------------------------------------- change rows
    def _change_row(
        self,
        record: RawRecord,
        table: str,
        server: str | None,
        schema_bytes: bytes | None,
        payload: dict,
    ) -> ChangeRow:
        event = _fast_change(payload)
        if event is None:
            _reject_wide_integers(record.value)  # the model takes a whole float for an integer field
            event = _from_model(ChangeEvent.model_validate(payload))
        image = event.row
        if image is None and event.op != "t":
            raise DecodeError(
                f"op '{event.op}' event has no {'before' if event.op == 'd' else 'after'} image"
            )
        image = image or {}
        if not _PLAIN_JSON_TYPES.issuperset(map(type, image.values())):
            _reject_wide_integers(record.value)  # a float (or a nested one) may be a rounded integer
        # Only a table without a key needs the old image of an update: nothing else identifies its row.
        before = event.before if record.key is None and isinstance(event.before, dict) else None
        # Without a Connect schema, both images type the columns: a column null in one is typed by the other.
        both = image if before is None else {**before, **{n: v for n, v in image.items() if v is not None}}
        if schema_bytes is not None:
            schema = self._connect_schema(schema_bytes)
            values, unavailable = self._convert(schema, image)
        elif (declared := self.source_types.of(event.source_schema, event.source_table, server)) is not None:
            schema = self._declared_schema(declared, both)
            values, unavailable = self._convert(schema, image)
        elif before is not None:
            schema = self._infer_schema(both)
            values, unavailable = self._convert(schema, image)
        else:
            schema, values, unavailable = self._inferred(image)
        if before is not None:
            if not _PLAIN_JSON_TYPES.issuperset(map(type, before.values())):
                _reject_wide_integers(record.value)
            before = self._convert(schema, before)[0]
        key_columns = self.note_table_version(table, schema, record.key)
        return ChangeRow(
            record=record,
            table=table,
            schema=schema,
            values=values,
            op=event.op,
            source_ts_us=event.source_ts_us,
            lsn=event.lsn,
            position=event.position,
            tx_id=event.tx_id,
            snapshot=event.snapshot,
            unavailable=unavailable,
            source_schema=event.source_schema,
            source_table=event.source_table,
            key_columns=key_columns,
            before=before,
        )

    def _declared_schema(self, declared: TableTypes, image: dict[str, Any]) -> TableSchema:
        """Every column of the types file (as a Connect schema lists every column), then the image's columns
        it does not type (added since the file was pulled, or of a type it does not know), inferred."""
        unknown = {n: v for n, v in image.items() if n not in declared.columns}
        inferred = self._infer_schema(unknown) if unknown else None
        key = (declared.server, declared.schema, declared.table, tuple(unknown), inferred)
        schema = self._declared_schemas.get(key)
        if schema is None:
            _check_column_names(list(image))
            extra = inferred.columns if inferred is not None else ()
            if unknown:
                log.warning(
                    "%s.%s: columns %s are not typed by the types file; their types are inferred from the "
                    "values until it is pulled again (`ingest types pull`)",
                    declared.schema,
                    declared.table,
                    ", ".join(sorted(unknown)),
                )
            schema = TableSchema((*declared.columns.values(), *extra), mode="declared")
            if len(self._declared_schemas) >= _MAX_CACHED_SCHEMAS:
                self._declared_schemas.clear()
            self._declared_schemas[key] = schema
        return schema

    def note_table_version(self, table: str, schema: TableSchema, key: bytes | None) -> list[str] | None:
        """The key columns (from the record key) when `schema` is a new version of `table`, else None."""
        if self._table_versions.get(table) is schema:
            return None
        self._table_versions[table] = schema
        return self._key_columns(key)

    def topic_kind(self, topic: str) -> TopicKind:
        kind = self._topic_kinds.get(topic)
        if kind is None:
            if len(self._topic_kinds) >= _MAX_CACHED_SCHEMAS:
                self._topic_kinds.clear()
            kind = self._topic_kinds[topic] = classify_topic(topic, self.naming)
        return kind

    def _inferred(self, image: dict[str, Any]) -> tuple[TableSchema, dict[str, Any], list[str]]:
        """Schema and values of a schemaless image. Fast path: when no value is an object, a list or one of
        the special strings, the inferred type of each column follows from its Python type alone, so the
        schema is cached by (names, types); when its converters only check that type (not so when a text
        value meets a column first seen as a VariableScaleDecimal), values are taken as they are. Anything
        else takes the general path."""
        values = image.values()
        types = tuple(map(type, values))
        if dict not in types and list not in types and SPECIAL_TEXT.isdisjoint(values):
            shape = (tuple(image), types)
            cached = self._inferred_by_shape.get(shape)
            if cached is None:
                schema = self._infer_schema(image)
                plain = all(c.convert in TYPE_CHECK_ONLY_CONVERTERS for c in schema.columns)
                if len(self._inferred_by_shape) >= _MAX_CACHED_SCHEMAS:
                    self._inferred_by_shape.clear()
                cached = self._inferred_by_shape[shape] = (schema, plain)
            schema, plain = cached
            if plain:
                # The image itself: its nulls read as missing values (`values.get`), so no copy without them.
                return schema, image, []
            converted, unavailable = self._convert(schema, image)
            return schema, converted, unavailable
        schema = self._infer_schema(image)
        converted, unavailable = self._convert(schema, image)
        return schema, converted, unavailable

    @staticmethod
    def _convert(schema: TableSchema, image: dict[str, Any]) -> tuple[dict[str, Any], list[str]]:
        values: dict[str, Any] = {}
        unavailable: list[str] = []
        by_name = schema.by_name
        for name, value in image.items():
            if value is None:
                continue
            # Inline pre-check of _is_unavailable: only strings and lists can be the placeholder.
            kind = type(value)
            if (kind is str or kind is list) and _is_unavailable(value):
                unavailable.append(name)
                continue
            column = by_name.get(name)
            if column is None:
                raise DecodeError(f"column {name!r} is not in the event's schema")
            convert = column.convert
            if convert is not None:
                try:
                    value = convert(value)
                except (ValueError, TypeError, ArithmeticError) as error:
                    raise TypeMappingError(f"column {name!r} ({column.source_type}): {error}") from None
            values[name] = value
        return values, unavailable

    def _infer_schema(self, image: dict[str, Any]) -> TableSchema:
        columns: list[ColumnType] = []
        for name, value in image.items():
            if value is None or _is_unavailable(value):
                continue
            cache_key = (name, _value_kind(value))
            if cache_key not in self._inferred_columns:
                self._inferred_columns[cache_key] = infer_column(name, value)
            column = self._inferred_columns[cache_key]
            if column is not None:
                columns.append(column)
        signature = tuple((c.name, c.duckdb_type) for c in columns)
        schema = self._inferred_schemas.get(signature)
        if schema is None:
            _check_column_names(list(image))
            schema = TableSchema(tuple(columns), mode="inferred")
            if len(self._inferred_schemas) >= _MAX_CACHED_SCHEMAS:
                self._inferred_schemas.clear()
            self._inferred_schemas[signature] = schema
        return schema

    @staticmethod
    def _key_columns(key: bytes | None) -> list[str]:
        if key is None:
            return []
        try:
            document = orjson.loads(key)
        except orjson.JSONDecodeError:
            return []
        if isinstance(document, dict) and set(document) == {"schema", "payload"}:
            if isinstance(document["schema"], dict):
                return key_columns_from_connect(ConnectSchema.model_validate(document["schema"]))
            document = document["payload"]
        return [str(k) for k in document] if isinstance(document, dict) else []


# A JSON number of 19+ digits outside a string (cheap pre-filter; `_integer_beyond_64_bits` decides). A scan
# costs ~3.5 us per KB, as much as parsing it: only values that may hold a rounded integer are scanned.
_BIG_INTEGER_CANDIDATE = re.compile(rb"[:,\[]\s*-?\d{19,}(?![\d.eE])")
_INT64 = range(_INT64_MIN, _INT64_MAX + 1)


def _reject_wide_integers(value: bytes | None) -> None:
    if value is None:  # a tombstone carries no value to check
        return
    if _BIG_INTEGER_CANDIDATE.search(value) and _integer_beyond_64_bits(value):
        raise DecodeError("an integer in the value is beyond the 64-bit range of any Connect type")


def _integer_beyond_64_bits(value: bytes) -> bool:
    """Whether the JSON document holds an integer outside int64 (the standard library keeps them exact)."""
    try:
        document = json.loads(value)
    except (ValueError, RecursionError):
        return False  # not valid JSON: the regular parse reports it
    stack = [document]
    while stack:
        item = stack.pop()
        if isinstance(item, dict):
            stack.extend(item.values())
        elif isinstance(item, list):
            stack.extend(item)
        elif isinstance(item, int) and not isinstance(item, bool) and item not in _INT64:
            return True
    return False


def _value_kind(value: Any) -> str:
    """What decides an inferred column type: the JSON type, refined for special floats and decimals."""
    if isinstance(value, dict):
        return "decimal" if is_variable_scale_decimal(value) else "object"
    if isinstance(value, str) and value in SPECIAL_FLOATS:
        return "special-float"
    return type(value).__name__
