"""Hostile input, property-based (hypothesis), at the decode level: pure and fast, many examples.

Whatever the bytes, `Decoder.decode` returns a result and never raises; a bad event becomes a dead letter
with a reason; the rows it lets through can always be turned into Arrow or are set apart with a reason; and
any identifier survives quoting (DuckDB reads back exactly the name the event carried)."""

import json

import duckdb
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ingest.core.batch import Batch
from ingest.core.decode import (
    ChangeRow,
    DeadLetter,
    Decoder,
    MessageRecord,
    RawRecord,
    Skipped,
    TransactionRecord,
)
from ingest.core.lake import quote_ident

FAST = settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
TOPICS = ["p.inventory.t", "p.transaction", "p.message", "p", "__debezium-heartbeat.p", "p.a.b.c"]

# identifiers with quotes, semicolons, dots, spaces, unicode, SQL comment markers and keywords
hostile_names = st.one_of(
    st.text(min_size=1, max_size=30),
    st.sampled_from(['x"; drop table t; --', "a.b", "naïve ünïcode", "select", "'quoted'", '""', "👾", " "]),
    st.text(alphabet="\";.'`-/* \\\n\tÄß日本", min_size=1, max_size=12),
)
json_scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(),  # unbounded: beyond int64 too
    st.integers(min_value=-(2**63), max_value=2**63 - 1),
    st.floats(allow_nan=False, allow_infinity=False),
    st.text(max_size=50),
    st.sampled_from(["NaN", "Infinity", "__debezium_unavailable_value", "\x00", "😀" * 10]),
)
json_values = st.recursive(
    json_scalars,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4),
    max_leaves=12,
)


def dumps(document) -> bytes:
    """JSON bytes; unlike orjson, the standard library writes integers beyond 64 bits too."""
    return json.dumps(document, ensure_ascii=False).encode()


def decode(value: bytes | None, topic: str = "p.inventory.t", key: bytes | None = b'{"id":1}'):
    return Decoder().decode(RawRecord(topic, 0, 7, key, value))


def envelope(after, op="c", source=None) -> dict:
    return {
        "before": None,
        "after": after,
        "op": op,
        "source": source if source is not None else {"lsn": 10, "ts_ms": 1795241515000, "txId": 3},
    }


def assert_well_formed(result, value) -> None:
    assert isinstance(result, (ChangeRow, TransactionRecord, MessageRecord, Skipped, DeadLetter))
    if isinstance(result, DeadLetter):
        assert result.error.strip(), "a dead letter needs a reason"
        assert result.record.value == value, "a dead letter keeps the raw bytes"


@FAST
@given(value=st.one_of(st.none(), st.binary(max_size=300)), topic=st.sampled_from(TOPICS))
def test_any_bytes_decode_to_a_result_never_an_exception(value, topic):
    assert_well_formed(decode(value, topic), value)


@FAST
@given(document=json_values, topic=st.sampled_from(TOPICS))
def test_any_json_document_decodes_to_a_result(document, topic):
    value = dumps(document)
    assert_well_formed(decode(value, topic), value)


@FAST
@given(after=st.dictionaries(hostile_names, json_values, max_size=6), op=st.text(max_size=3))
def test_any_row_image_and_op(after, op):
    value = dumps(envelope(after, op))
    result = decode(value)
    assert_well_formed(result, value)
    if op not in ("r", "c", "u", "d", "t"):
        assert isinstance(result, DeadLetter)
        assert "op" in result.error or "64-bit" in result.error
    if isinstance(result, ChangeRow):
        names = [c.name for c in result.schema.columns]
        assert all(name and "\x00" not in name for name in names)
        assert not {n.lower() for n in names} & {"_cdc_op", "_kafka_offset", "_batch_id"}


@FAST
@given(
    field=st.sampled_from(["before", "after", "op", "source", "ts_ms", "transaction"]),
    replacement=json_values,
    delete=st.booleans(),
)
def test_missing_fields_and_wrong_types_in_the_envelope(field, replacement, delete):
    document = envelope({"id": 1, "name": "x"})
    document["ts_ms"] = 1
    if delete:
        document.pop(field, None)
    else:
        document[field] = replacement
    value = dumps(document)
    assert_well_formed(decode(value), value)


@FAST
@given(
    field=st.sampled_from(["lsn", "ts_ms", "ts_us", "txId", "snapshot", "schema", "table"]),
    replacement=json_values,
)
def test_wrong_types_in_the_source_block(field, replacement):
    source = {"lsn": 10, "ts_ms": 1795241515000, "txId": 3, field: replacement}
    value = dumps(envelope({"id": 1}, source=source))
    assert_well_formed(decode(value), value)


CONNECT_TYPES = ["int8", "int16", "int32", "int64", "float32", "float64", "boolean", "string", "bytes"]


@FAST
@given(
    declared=st.sampled_from(CONNECT_TYPES),
    name=st.sampled_from(["", None, "io.debezium.time.Date", "org.apache.kafka.connect.data.Decimal"]),
    sent=json_values,
)
def test_values_that_do_not_match_their_declared_connect_type(declared, name, sent):
    field = {"type": declared, "optional": True, "field": "v"}
    if name:
        field["name"] = name
        field["parameters"] = {"scale": "2"}
    row = {"type": "struct", "optional": True, "fields": [field], "name": "x.Value"}
    schema = {
        "type": "struct",
        "optional": False,
        "name": "x.Envelope",
        "fields": [{**row, "field": "before"}, {**row, "field": "after"}],
    }
    value = dumps({"schema": schema, "payload": envelope({"v": sent})})
    assert_well_formed(decode(value), value)


@settings(max_examples=30, deadline=None)
@given(depth=st.integers(min_value=1, max_value=20_000), kind=st.sampled_from(["object", "array"]))
def test_deep_nesting_is_a_dead_letter_or_a_row_never_a_crash(depth, kind):
    inner = b'{"a":' * depth + b"1" + b"}" * depth if kind == "object" else b"[" * depth + b"1" + b"]" * depth
    value = b'{"op":"c","source":{"lsn":1},"after":{"id":1,"deep":' + inner + b"}}"
    result = decode(value)
    assert_well_formed(result, value)
    if depth > 2000:
        assert isinstance(result, DeadLetter)


@FAST
@given(junk=st.binary(min_size=1, max_size=8), at=st.integers(min_value=0, max_value=60))
def test_invalid_utf8_anywhere_in_a_valid_event(junk, at):
    good = dumps(envelope({"id": 1, "name": "some text here"}))
    value = good[:at] + b"\xff" + junk + good[at:]
    result = decode(value)
    assert_well_formed(result, value)
    assert isinstance(result, DeadLetter)


@FAST
@given(images=st.lists(st.dictionaries(hostile_names, json_scalars, max_size=4), min_size=1, max_size=6))
def test_decoded_rows_always_build_arrow_or_are_set_apart_with_a_reason(images):
    """What the decoder lets through must not fail a whole batch: Arrow takes it, or the row is refused."""
    decoder = Decoder()
    batch = Batch(1)
    for offset, image in enumerate(images):
        batch.add(decoder.decode(RawRecord("p.s.t", 0, offset, None, dumps(envelope(image)))))
    batch.close()  # builds Arrow, setting refused rows apart
    for segments in batch.segments.values():
        for rows in segments:
            assert rows.arrow.num_rows + len(rows.refused) == len(rows.records)
            assert all(reason for _, reason in rows.refused)
            rows.landing_table(1)


@pytest.fixture(scope="module")
def duck():
    con = duckdb.connect()
    yield con
    con.close()


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(name=hostile_names.filter(lambda n: "\x00" not in n))
def test_every_identifier_is_quoted_and_reads_back_exactly(duck, name):
    """No identifier reaches SQL unquoted: a table and column named by an event are exactly that name."""
    duck.execute(f"create or replace table {quote_ident(name)} ({quote_ident(name)} integer)")
    try:
        columns = duck.execute(
            "select table_name, column_name from duckdb_columns() where schema_name = 'main' and not internal"
        ).fetchall()
        assert columns == [(name, name)]
    finally:
        duck.execute(f"drop table {quote_ident(name)}")


@FAST
@given(number=st.integers(), where=st.sampled_from(["after", "lsn"]))
def test_an_integer_beyond_64_bits_is_a_dead_letter_not_a_rounded_float(number, where):
    """Regression (found by the integration fuzz test): orjson reads an integer beyond 64 bits as a float, so
    a schemaless event landed `2**70 + 1` rounded, and turned its column into DOUBLE. Now the number is either
    refused by the decoder or carried exactly (orjson keeps integers up to 2**64 exact) and then refused by
    the Arrow column, which the sink turns into a dead letter (`batch.Segment.close`)."""
    document = envelope({"id": number}) if where == "after" else envelope({"id": 1}, source={"lsn": number})
    value = dumps(document)
    result = decode(value)
    if -(2**63) <= number < 2**63:
        assert isinstance(result, ChangeRow)
        assert (result.values["id"] if where == "after" else result.lsn) == number
    elif isinstance(result, DeadLetter):
        assert "64-bit" in result.error
    else:
        assert isinstance(result, ChangeRow) and where == "after" and number < 2**64
        assert result.values["id"] == number and type(result.values["id"]) is int  # exact, not rounded
        batch = Batch(batch_id=1)
        batch.add(result)
        batch.close()
        (rows,) = batch.segments[result.table]
        refused = rows.refused
        assert not rows.arrow.num_rows and len(refused) == 1 and "does not fit" in refused[0][1]
