"""Columnar decoding of plain change events in DuckDB: the per-event hot path, in C++ instead of Python.

A chunk of records of one data topic goes to an in-memory DuckDB as one Arrow column of raw values. One SQL
query parses every value once per function: `json_type` reads the JSON type of every field the Python
decoder's fast path checks (envelope, source and transaction blocks, both row images), `json_keys` the keys
of each (which lists duplicates), and `json_transform_strict` types the fields a staging row needs (a number
out of its column's range fails the pass); the result is the rows to land plus each row's signature (op and
types). The signatures are grouped over that result: each distinct one is checked once, in Python, by the
rules of `ingest.core.plain` (the ones the Python decoder's fast path applies), and the first row of each is
decoded by the Python decoder itself, which gives the staging schema. A chunk is landed from SQL only when
every row passes and every check holds; anything else (a dead letter, a TOAST placeholder, a TRUNCATE, a
float, a Connect type that needs converting, a new column...) sends the whole chunk back to `Decoder.decode`,
record by record. So a chunk lands the same whichever way it goes: the equivalence is tested on the corpus
and on fuzzed input (pytests/test_bulk_decode.py).

Why: per-event Python (JSON parse, checks, record objects, Arrow build) held the GIL for ~8 us per 1 KB
event; this path holds it for ~1.5 us and spends ~7-8 us in DuckDB, which releases it, in a thread of its own
beside the consumer loop (`BulkDecoder.parse`; docs/benchmarks.md)."""

from __future__ import annotations

import json
import logging
from collections.abc import Sequence
from dataclasses import dataclass, field

import duckdb
import orjson
import pyarrow as pa
from confluent_kafka import Message

from ingest.core import contract, plain
from ingest.core.decode import (
    PAYLOAD_MARK,
    SCHEMA_PREFIX,
    SPECIAL_TEXT,
    ChangeRow,
    Decoder,
    MessageRecords,
    connect_halves,
    position,
    to_record,
)
from ingest.core.plain import CHANGE_OPS, TRANSACTION_INT_FIELDS
from ingest.core.position import lsn_position
from ingest.core.rows import ChangeRows, Origin
from ingest.core.typemap import TYPE_CHECK_ONLY_CONVERTERS, ColumnType

log = logging.getLogger(__name__)

# Below this many records a chunk is decoded in Python: the SQL passes cost ~1-2 ms whatever the size.
MIN_BULK_EVENTS = 64
_INTEGER_TYPES = frozenset({"TINYINT", "SMALLINT", "INTEGER", "BIGINT"})
# The Connect primitives whose Python converter only checks the JSON type (and an integer's range, which
# json_transform_strict checks against the column's type).
_PLAIN_CONNECT_TYPES = frozenset({"int8", "int16", "int32", "int64", "string", "boolean"})
_JSON_TYPES_OF = {"VARCHAR": frozenset({"VARCHAR"}), "BOOLEAN": frozenset({"BOOLEAN"})}
_JSON_INTEGERS = frozenset({"UBIGINT", "BIGINT"})
_IMAGE_OPS = CHANGE_OPS - {"t"}  # a TRUNCATE has no image: Python decodes it
# Values of fields no check reads: any JSON scalar but a float (DuckDB also reads NaN, Infinity and numbers
# beyond a double as floats, which orjson refuses as invalid JSON).
_SCALAR_TYPES = frozenset({"UBIGINT", "BIGINT", "VARCHAR", "BOOLEAN", "NULL"})
_TEXT_LIKE_PYTHON = frozenset({"UBIGINT", "BIGINT", "VARCHAR", "NULL"})
# Source fields a staging row takes, with the type json_transform_strict gives them.
_SOURCE_FIELDS = {
    "ts_ms": "BIGINT",
    "ts_us": "BIGINT",
    "lsn": "BIGINT",
    "txId": "VARCHAR",
    "snapshot": "VARCHAR",
}
# DuckDB's JSON reader takes trailing commas, which orjson refuses; nothing else it takes is invalid JSON
# except non-finite and overflowing numbers, which read as floats (refused by type).
_TRAILING_COMMA = r",\s*[}\]]"
_TRANSACTION_KEYS = ("id", *TRANSACTION_INT_FIELDS)  # as Debezium writes the block


def _pointer(*parts: str) -> str:
    """A JSON pointer (RFC 6901): safe for any column name, unlike a `$.name` path."""
    return "".join("/" + p.replace("~", "~0").replace("/", "~1") for p in parts)


def _literal(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"


def _list_literal(items: Sequence[str]) -> str:
    return "[" + ", ".join(_literal(item) for item in items) + "]::varchar[]"


def _ident(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


@dataclass(slots=True)
class _Plan:
    """How one topic's chunks are parsed: the keys of its envelopes, learned from a chunk's first record.
    Every row of a chunk must have exactly these keys (they are part of its signature)."""

    prefix: bytes  # the Connect schema half every value starts with; b"" for schemaless values
    top_keys: tuple[str, ...]
    source_keys: tuple[str, ...]
    image_keys: tuple[str, ...]
    transaction_keys: tuple[str, ...]  # () when the envelope has no transaction field
    columns: dict[str, ColumnType] = field(default_factory=dict)  # typed by the SQL pass; {}: not yet

    @property
    def paths(self) -> list[str]:
        paths = [_pointer(k) for k in self.top_keys] + [_pointer("source", k) for k in self.source_keys]
        paths += [_pointer("transaction", k) for k in self.transaction_keys]
        for image in ("before", "after"):
            paths += [_pointer(image, k) for k in self.image_keys]
        return paths

    def split_types(self, types: str) -> _Types | None:
        """A signature's JSON types per part. Paths under a part that is not an object are missing and
        left out of the signature, so its parts are told apart by the envelope's types; None when the
        count does not add up (a part that is an object lacks a key)."""
        listed = types.split(",") if types else []
        top = dict(zip(self.top_keys, listed, strict=False))
        parts: list[list[str]] = []
        at = len(self.top_keys)
        for name, keys in (
            ("source", self.source_keys),
            ("transaction", self.transaction_keys),
            ("before", self.image_keys),
            ("after", self.image_keys),
        ):
            count = len(keys) if top.get(name) == "OBJECT" else 0
            parts.append(listed[at : at + count])
            at += count
        if at != len(listed) or len(top) != len(self.top_keys):
            return None
        source, transaction, before, after = parts
        return _Types(
            top,
            dict(zip(self.source_keys, source, strict=False)),
            dict(zip(self.transaction_keys, transaction, strict=False)),
            before,
            after,
        )


@dataclass(frozen=True, slots=True)
class _Types:
    """The JSON types of one signature: per key of envelope, source and transaction block (missing when
    the block is not an object), and of each image's keys in the plan's order ([] when not an object)."""

    top: dict[str, str]
    source: dict[str, str]
    transaction: dict[str, str]
    before: list[str]
    after: list[str]


@dataclass(slots=True)
class Chunk:
    """Records of one data topic for the SQL decoder, with what the consumer already read of each (the
    client's accessors cost a call each), in offset order per partition."""

    messages: list[Message] = field(default_factory=list)
    values: list[bytes | None] = field(default_factory=list)
    partitions: list[int] = field(default_factory=list)
    offsets: list[int] = field(default_factory=list)

    @classmethod
    def of(cls, messages: Sequence[Message]) -> Chunk:
        positions = [position(m) for m in messages]
        values = [m.value() for m in messages]
        return cls(list(messages), values, [p for _, p, _ in positions], [o for _, _, o in positions])

    def __len__(self) -> int:
        return len(self.messages)


@dataclass(frozen=True, slots=True)
class _Input:
    """A chunk's records and the Arrow input of the SQL passes, built once however often it is parsed."""

    messages: list[Message]
    arrow: pa.Table

    @classmethod
    def of(cls, chunk: Chunk) -> _Input:
        messages = chunk.messages
        timestamps = [m.timestamp() for m in messages]
        arrow = pa.table(
            {
                "v": pa.array(chunk.values, pa.binary()),
                "p": pa.array(chunk.partitions, pa.int32()),
                "o": pa.array(chunk.offsets, pa.int64()),
                "ts": pa.array([t if kind else None for kind, t in timestamps], pa.int64()),
                "n": pa.array(range(len(messages)), pa.int64()),
                "k": pa.array([m.key() is None for m in messages], pa.bool_()),
            }
        )
        return cls(messages, arrow)


@dataclass(frozen=True, slots=True)
class _Verdict:
    """A signature checked once: the staging schema of its rows, or why SQL does not land them."""

    change: ChangeRow | None = None  # the first row, decoded by the Python decoder
    refusal: str | None = None


class _Replan(Exception):
    """The chunk showed columns or types the plan did not have: parse it again with them."""


class BulkDecoder:
    """Decodes chunks of one data topic in DuckDB; holds only caches and its in-memory connection."""

    def __init__(self, decoder: Decoder, threads: int = 1, min_events: int = MIN_BULK_EVENTS) -> None:
        self.decoder = decoder
        self.min_events = min_events
        # Signatures are checked by decoding a row with a decoder of their own, so that the main decoder's
        # state (table versions, hence key columns) moves only with what is landed.
        self._probe = Decoder(
            decoder.skip_heartbeats, decoder.skip_schema_changes, decoder.source_types, decoder.naming
        )
        self._con = duckdb.connect(
            config={
                "threads": threads,
                "autoinstall_known_extensions": False,
            }
        )
        self._plans: dict[tuple, _Plan] = {}
        self._verdicts: dict[tuple, _Verdict] = {}

    def close(self) -> None:
        self._con.close()

    def decode(self, topic: str, table: str, messages: Sequence[Message]) -> ChangeRows | None:
        """The chunk's change rows decoded in SQL, or None: then decode it record by record in Python.
        `messages` are records of `topic` with a value, in offset order per partition."""
        rows = self.parse(topic, table, Chunk.of(messages))
        return None if rows is None else self.settle(rows)

    def settle(self, rows: ChangeRows) -> ChangeRows:
        """Note the rows' table version in the main decoder (the key columns come with the first chunk of
        a version): in the thread that decodes in Python, in record order with what it decodes."""
        rows.key_columns = self.decoder.note_table_version(rows.table, rows.schema, rows.records[0].key)
        return rows

    def parse(self, topic: str, table: str, chunk: Chunk) -> ChangeRows | None:
        """`decode` but for `settle`: touches only this object's own state (plans, signatures, its probe
        decoder and connection), so it may run in a thread of its own, one call at a time."""
        if len(chunk) < self.min_events:
            return None
        plan = self._plan(topic, chunk.values[0])
        if plan is None:
            return self._fallback(topic, "its first record is not a plain change event")
        parse_input = _Input.of(chunk)
        for _ in range(3):
            try:
                rows = self._decode_with(plan, topic, table, parse_input)
            except _Replan:
                continue
            # DuckDB cuts a long error message at a byte count, which can split a character: the client
            # then fails to decode the message itself (found by the hostile-record test).
            except (duckdb.Error, UnicodeDecodeError) as error:
                if plan.columns:  # typed by an older plan: learn the types again
                    plan.columns = {}
                    continue
                return self._fallback(topic, f"SQL refused it: {str(error).splitlines()[0][:300]}")
            return rows if rows is not None else self._fallback(topic, "a row is not plain")
        return self._fallback(topic, "its columns keep changing")

    def _fallback(self, topic: str, why: str) -> ChangeRows | None:
        """None: the chunk goes to the Python decoder record by record (logged with the reason)."""
        log.debug("a chunk of %s is decoded in Python: %s", topic, why)
        return None

    # ----------------------------------------------------------------------------------------- plan
    def _plan(self, topic: str, first: bytes | None) -> _Plan | None:
        """The plan of the chunk's first value (its envelope's keys), kept per topic and key set."""
        if first is None:
            return None
        halves = connect_halves(first)
        if halves is not None:
            schema_bytes, payload_bytes = halves
            prefix = SCHEMA_PREFIX + schema_bytes + PAYLOAD_MARK
        elif first.startswith(SCHEMA_PREFIX):
            return None
        else:
            prefix, payload_bytes = b"", first
        try:
            payload = orjson.loads(payload_bytes)
        except orjson.JSONDecodeError:
            return None
        if not isinstance(payload, dict) or not {"op", "before", "after", "source"} <= payload.keys():
            return None
        image = payload["before"] if payload["op"] == "d" else payload["after"]
        source = payload["source"]
        if not isinstance(image, dict) or not isinstance(source, dict):
            return None
        transaction = payload.get("transaction", {})
        if transaction is None:  # a snapshot row: learn the block's keys from Debezium's
            transaction = dict.fromkeys(_TRANSACTION_KEYS)
        if not isinstance(transaction, dict):
            return None
        key = (topic, prefix, tuple(payload), tuple(source), tuple(image), tuple(transaction))
        plan = self._plans.get(key)
        if plan is None:
            if len(self._plans) >= 1024:
                self._plans.clear()
            plan = self._plans[key] = _Plan(prefix, *key[2:])
        return plan

    # ------------------------------------------------------------------------------------------ SQL
    def _decode_with(self, plan: _Plan, topic: str, table: str, chunk: _Input) -> ChangeRows | None:
        messages = chunk.messages
        con = self._con
        # One pass parses the values into the rows to land plus each row's signature; the signatures are
        # then grouped over that result (an Arrow table: no second parse, no temporary table).
        con.register("_bulk_input", chunk.arrow)
        try:
            parsed = con.execute(self._parse_sql(plan, topic)).to_arrow_table()
        finally:
            con.unregister("_bulk_input")
        con.register("_bulk_parsed", parsed)
        try:
            signatures = con.execute(self._signature_sql(plan)).fetchall()
        finally:
            con.unregister("_bulk_parsed")
        verdicts = []
        for op, types, first, clean in signatures:
            if types is None:  # another schema half: not parsed
                log.debug("row %d of a chunk of %s: another schema", first, topic)
                return None
            verdict = self._verdict(plan, topic, op, types, messages[first])
            if verdict.refusal is not None or not clean:
                log.debug("row %d of a chunk of %s: %s", first, topic, verdict.refusal or "special text")
                return None
            verdicts.append(verdict)
        columns = _union(verdicts)
        if columns is None:
            return None
        if any(
            plan.columns.get(n, c).duckdb_type != c.duckdb_type or n not in plan.columns
            for n, c in columns.items()
        ):
            plan.columns = {**plan.columns, **columns}
            raise _Replan
        if not parsed.column("_bulk_n").equals(chunk.arrow.column("n")):  # DuckDB keeps the input's order
            parsed = parsed.sort_by("_bulk_n")
        first = verdicts[0].change
        assert first is not None
        return ChangeRows(
            table=table,
            mode=first.schema.mode,
            columns=columns,
            schema=first.schema,
            origin=Origin(topic, first.source_schema, first.source_table),
            arrow=_output_table(parsed, columns),
            records=MessageRecords(messages),
            decoder="sql",
        )

    @staticmethod
    def _image_struct(plan: _Plan) -> str:
        return json.dumps({name: column.duckdb_type for name, column in plan.columns.items()})

    def _parse_sql(self, plan: _Plan, topic: str) -> str:
        """The rows to land (the image as one struct column, which a column of any name fits in, and the
        metadata columns) and, per row, its signature: `_bulk_types`, the JSON type of every key of
        envelope, source block, transaction block and images, and `_bulk_clean`, the checks that need no
        signature (keys, trailing commas, the schema half, a keyless update's before image)."""
        source = {f: t for f, t in _SOURCE_FIELDS.items() if f in plan.source_keys}
        struct = json.dumps({"op": "VARCHAR", "before": "JSON", "after": "JSON", "source": source})
        image = "null"
        if plan.columns:
            image_struct = self._image_struct(plan)
            struct = struct.replace('"after": "JSON"', f'"after": {image_struct}')
            image = (
                f"case when e.op = 'd' then json_transform_strict(e.before, {_literal(image_struct)}) "
                "else e.after end"
            )
        if plan.prefix:
            # a value with another schema half is not parsed (its payload would start elsewhere)
            payload = f"case when prefix_ok then decode(v[{len(plan.prefix) + 1}:-2]) end"
            prefix_ok = f"v[1:{len(plan.prefix)}] = from_hex('{plan.prefix.hex()}') and v[-1:] = '}}'::blob"
        else:
            payload, prefix_ok = "decode(v)", "true"
        paths = ", ".join(_literal(p) for p in plan.paths)
        # Literals, not parameters: DuckDB's Python client tries to import pandas for every parameter, which
        # costs a search of sys.path each time it is not installed (~9 ms a chunk).
        top_keys, source_keys, image_keys, transaction_keys = (
            _list_literal(keys)
            for keys in (plan.top_keys, plan.source_keys, plan.image_keys, plan.transaction_keys)
        )
        no_transaction = "false" if plan.transaction_keys else "true"
        metadata = ",\n".join(f"{sql} as {name}" for name, sql in _metadata_sql(plan, topic).items())
        return f"""
            with payloads as (
                select n, p, o, ts, k, prefix_ok, {payload} as s
                from (select *, {prefix_ok} as prefix_ok from _bulk_input)
            ),
            parsed as (
                select
                    n, p, o, ts,
                    prefix_ok and not regexp_matches(s, {_literal(_TRAILING_COMMA)}) as clean,
                    k,
                    -- no float anywhere (NaN, Infinity): every key of envelope, source and images is typed;
                    -- a missing path is left out (see _Plan.split_types)
                    array_to_string(json_type(s, [{paths}]), ',') as types,
                    json_keys(s, ['$', '$.source', '$.before', '$.after', '$.transaction']) as keys,
                    json_transform_strict(s, {_literal(struct)}) as e
                from payloads
            )
            select
                {image} as image,
                {metadata},
                n as _bulk_n,
                types as _bulk_types,
                -- every row has the first record's keys (json_keys lists duplicates too)
                coalesce(
                    -- an update of a keyless table: its before image must land too, which only Python does
                    clean
                    and not case when k then e.op = 'u' and json_type(e.before) = 'OBJECT' else false end
                    and keys[1] = {top_keys} and keys[2] = {source_keys}
                    and keys[3] in ([], {image_keys}) and keys[4] in ([], {image_keys})
                    and (keys[5] in ([], {transaction_keys}) or (keys[5] is null and {no_transaction})),
                    false
                ) as _bulk_clean
            from parsed
        """

    @staticmethod
    def _signature_sql(plan: _Plan) -> str:
        special = ", ".join(_literal(t) for t in sorted(SPECIAL_TEXT))
        plain_text = [
            f"coalesce(image.{_ident(name)} not in ({special}), true)"
            for name, column in plan.columns.items()
            if column.duckdb_type == "VARCHAR"
        ]
        clean = " and ".join(["_bulk_clean", *plain_text])
        return f"""
            select _cdc_op, _bulk_types, min(_bulk_n) as first, bool_and({clean}) as clean
            from _bulk_parsed
            group by all
            order by first
        """

    # ------------------------------------------------------------------------------------ signatures
    def _verdict(self, plan: _Plan, topic: str, op: str | None, types: str, message: Message) -> _Verdict:
        cache_key = (topic, plan.prefix, plan.top_keys, plan.source_keys, plan.image_keys, op, types)
        verdict = self._verdicts.get(cache_key)
        if verdict is None:
            verdict = self._check(plan, op, types, message)
            if len(self._verdicts) >= 4096:
                self._verdicts.clear()
            self._verdicts[cache_key] = verdict
        return verdict

    def _check(self, plan: _Plan, op: str | None, signature: str, message: Message) -> _Verdict:
        """The rules of `ingest.core.plain` and of a plain row image, on one signature; then the
        Python decoder on its first row: every row of the signature has the same keys (the plan's, checked
        in SQL) and JSON types, so the same staging schema."""
        types = plan.split_types(signature)
        if types is None:
            return _Verdict(refusal="an object lacks a key of the chunk's first record")
        refusal = _refusal(op, types)
        if refusal is not None:
            return _Verdict(refusal=refusal)
        for name, image_types in (("before", types.before), ("after", types.after)):
            if not _SCALAR_TYPES.issuperset(image_types):
                return _Verdict(refusal=f"a value in {name} is a float, an object or a list")
        change = self._probe.decode(to_record(message))
        if not isinstance(change, ChangeRow):
            return _Verdict(refusal=f"the Python decoder makes it a {type(change).__name__}")
        if change.unavailable or change.op != op:
            return _Verdict(refusal="unavailable (TOAST) values")
        if (change.schema.mode == "connect") != bool(plan.prefix):
            return _Verdict(refusal="the value's form differs from the chunk's first record")
        if change.position != lsn_position(change.lsn):
            return _Verdict(refusal="the source's position is not an LSN (another connector)")
        if change.tx_id is not None and types.source.get("txId", "NULL") == "NULL":
            return _Verdict(refusal="the transaction id is the transaction block's")
        by_name = change.schema.by_name
        for key, json_type in zip(plan.image_keys, types.before if op == "d" else types.after, strict=True):
            column = by_name.get(key)
            if json_type == "NULL":
                continue
            if column is None or not _plain_column(column) or json_type not in _json_types_of(column):
                return _Verdict(refusal=f"column {key!r} is not a plain {json_type} column")
        return _Verdict(change=change)


def _metadata_sql(plan: _Plan, topic: str) -> dict[str, str]:
    """The SQL of each decoded metadata column (`contract.DECODED_METADATA`), as `_fast_change` reads them."""
    fields = set(plan.source_keys)
    ts_us = "e.source.ts_us" if "ts_us" in fields else "null"
    ts_ms = "e.source.ts_ms * 1000" if "ts_ms" in fields else "null"
    snapshot = "coalesce(e.source.snapshot, 'false') <> 'false'" if "snapshot" in fields else "false"
    metadata = {
        "_cdc_op": "e.op",
        "_cdc_deleted": "e.op = 'd'",
        "_cdc_source_ts": f"coalesce({ts_us}, {ts_ms})",
        "_cdc_lsn": "e.source.lsn" if "lsn" in fields else "null",
        # PostgreSQL's; a source with another position is declined (_check)
        "_cdc_position": "case when e.source.lsn >= 0 then [e.source.lsn] end" if "lsn" in fields else "null",
        "_cdc_tx_id": 'e.source."txId"' if "txId" in fields else "null",
        "_cdc_snapshot": snapshot,
        "_cdc_unavailable_columns": "[]::varchar[]",
        "_kafka_topic": _literal(topic),
        "_kafka_partition": "p",
        "_kafka_offset": "o",
        "_kafka_timestamp": "ts",
    }
    assert tuple(metadata) == contract.DECODED_NAMES, "decode_sql.py does not fill the contract's columns"
    return metadata


def _refusal(op: str | None, types: _Types) -> str | None:
    """Why `_fast_change` would not take an envelope whose fields have these JSON types (`ingest.core.plain`
    says what is plain), or why SQL would not land it as Python does; None when it takes it."""
    top = types.top
    transaction = top.get("transaction") == "OBJECT"
    refusal = (
        plain.ENVELOPE.refusal("envelope", top)
        or plain.SOURCE.refusal("source", types.source)
        or (plain.TRANSACTION.refusal("transaction", types.transaction) if transaction else None)
    )
    if refusal is not None:
        return refusal
    # What SQL adds: a TRUNCATE has no image, and an event without its image is a dead letter (Python
    # decodes both); txId lands as text, and SQL's text of a boolean is not Python's str().
    if op not in _IMAGE_OPS:
        return f"op {op!r}"
    image = "before" if op == "d" else "after"
    if top[image] != "OBJECT":
        return f"{image} is not an object"
    if types.source.get("txId", "NULL") not in _TEXT_LIKE_PYTHON:
        return "source.txId is a boolean"
    # Fields the model does not check may be anything to Python, but DuckDB reads NaN, Infinity and numbers
    # beyond a double (which orjson refuses) as floats: every other field must be a scalar, not a float.
    blocks = [("envelope", top, plain.ENVELOPE), ("source", types.source, plain.SOURCE)]
    if transaction:
        blocks.append(("transaction", types.transaction, plain.TRANSACTION))
    for where, fields, block in blocks:
        for name, json_type in fields.items():
            if block.fields.get(name, plain.ANY) == plain.ANY and json_type not in _SCALAR_TYPES:
                return f"{where}.{name} is a float, an object or a list"
    return None


def _plain_column(column: ColumnType) -> bool:
    """A column whose Python conversion only checks the JSON type (and an integer's range, which
    json_transform_strict checks against the column type), with no SQL cast on landing."""
    if column.sql is not None or column.duckdb_type not in _INTEGER_TYPES | {"VARCHAR", "BOOLEAN"}:
        return False
    if column.convert in TYPE_CHECK_ONLY_CONVERTERS:
        return True
    return column.source_type in _PLAIN_CONNECT_TYPES


def _json_types_of(column: ColumnType) -> frozenset[str]:
    if column.duckdb_type in _INTEGER_TYPES:
        return _JSON_INTEGERS
    return _JSON_TYPES_OF.get(column.duckdb_type, frozenset())


def _union(verdicts: list[_Verdict]) -> dict[str, ColumnType] | None:
    """The columns of one segment holding every signature's rows (as `Segment.accepts` merges inferred
    ones), or None when two signatures disagree on a column's type or are different Connect schemas."""
    columns: dict[str, ColumnType] = {}
    schemas = {id(v.change.schema) for v in verdicts if v.change is not None}
    if len(schemas) > 1 and any(
        v.change is not None and v.change.schema.mode != "inferred" for v in verdicts
    ):
        return None
    for verdict in verdicts:
        assert verdict.change is not None
        for column in verdict.change.schema.columns:
            current = columns.get(column.name)
            if current is None:
                columns[column.name] = column
            elif current.duckdb_type != column.duckdb_type:
                return None
    return columns


def _output_table(parsed: pa.Table, columns: dict[str, ColumnType]) -> pa.Table:
    """The image's columns (out of its struct) and the metadata columns, in the transport types.

    Every column is copied (`combine_chunks` concatenates into new buffers): the rows then hold no memory
    of DuckDB's, whose allocator keeps what another thread frees (measured: +300 MB of RSS when the batches
    built here were released by the consumer loop and the writer)."""
    image = parsed.column("image").combine_chunks()
    fields = dict(zip((f.name for f in image.type), image.flatten(), strict=True))
    arrays = [fields[name] for name in columns]
    arrays += [parsed.column(name).combine_chunks() for name in contract.DECODED_NAMES]
    schema = _output_schema(columns)
    return pa.Table.from_arrays(arrays, names=schema.names).cast(schema)


def _output_schema(columns: dict[str, ColumnType]) -> pa.Schema:
    image = [pa.field(name, column.arrow_type) for name, column in columns.items()]
    return pa.schema(image + contract.decoded_metadata_fields())
