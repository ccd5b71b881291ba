"""Type mapping: Connect logical types, strict value checks, inference, widening rules."""

from decimal import Decimal

import pyarrow as pa
import pytest

from ingest.core.batch import Segment
from ingest.core.decode import ChangeRow, RawRecord
from ingest.core.envelope import ConnectSchema
from ingest.core.typemap import (
    TableSchema,
    TypeMappingError,
    bits_text,
    decimal_converter,
    from_connect,
    infer_column,
    is_widening,
    iso_interval,
    variable_scale_decimal_text,
)


def column(**schema):
    return from_connect("c", ConnectSchema.model_validate(schema))


@pytest.mark.parametrize(
    ("schema", "duckdb_type"),
    [
        ({"type": "int8"}, "TINYINT"),
        ({"type": "int16"}, "SMALLINT"),
        ({"type": "int64"}, "BIGINT"),
        ({"type": "float"}, "FLOAT"),
        ({"type": "bytes"}, "BLOB"),
        (
            {
                "type": "bytes",
                "name": "org.apache.kafka.connect.data.Decimal",
                "parameters": {"scale": "2", "connect.decimal.precision": "12"},
            },
            "DECIMAL(12,2)",
        ),
        (
            {"type": "bytes", "name": "org.apache.kafka.connect.data.Decimal", "parameters": {"scale": "2"}},
            "DECIMAL(38,2)",
        ),
        (
            {
                "type": "bytes",
                "name": "org.apache.kafka.connect.data.Decimal",
                "parameters": {"scale": "2", "connect.decimal.precision": "50"},
            },
            "VARCHAR",
        ),
        ({"type": "int32", "name": "io.debezium.time.Date"}, "DATE"),
        ({"type": "int32", "name": "io.debezium.time.Time"}, "TIME"),
        ({"type": "int64", "name": "io.debezium.time.NanoTime"}, "TIME"),
        ({"type": "int64", "name": "io.debezium.time.NanoTimestamp"}, "TIMESTAMP"),
        ({"type": "string", "name": "io.debezium.time.ZonedTimestamp"}, "TIMESTAMP WITH TIME ZONE"),
        ({"type": "string", "name": "io.debezium.time.Interval"}, "VARCHAR"),  # exact ISO text
        ({"type": "int64", "name": "io.debezium.time.MicroDuration"}, "BIGINT"),  # exact microseconds
        ({"type": "bytes", "name": "io.debezium.data.Bits", "parameters": {"length": "10"}}, "BIT"),
        ({"type": "string", "name": "io.debezium.data.Enum", "parameters": {"allowed": "a,b"}}, "VARCHAR"),
        ({"type": "array", "items": {"type": "string", "name": "io.debezium.data.Uuid"}}, "UUID[]"),
        ({"type": "struct", "fields": [{"type": "int32", "field": "x"}]}, "JSON"),
    ],
)
def test_connect_types_map_to_duckdb(schema, duckdb_type):
    assert column(**schema).duckdb_type == duckdb_type


def test_decimals_are_exact():
    assert decimal_converter(2)("HL6ZGhQ=") == Decimal("1234567890.12")
    assert decimal_converter(2)("/w==") == Decimal("-0.01")
    assert decimal_converter(4)("BGLVPIq6wA==") == Decimal("123456789012.3456")
    assert decimal_converter(2)(1234567890.12) == Decimal("1234567890.12")  # decimal.format=NUMERIC
    assert variable_scale_decimal_text({"scale": 38, "value": "AOxY36dGQa9SrQ0W531XZiM="}) == (
        "3.14159265358979323846264338327950288419"
    )


def test_strings_of_other_encodings():
    assert iso_interval("P1Y2M3DT4H5M6.78S") == pa.MonthDayNano(
        [14, 3, (4 * 3600 + 5 * 60) * 10**9 + 6_780_000_000]
    )
    assert iso_interval("-P1D") == pa.MonthDayNano([0, -1, 0])
    assert bits_text(4)("Cw==") == "1011"  # BitSet 0b1011, little-endian bytes


@pytest.mark.parametrize(
    ("schema", "bad"),
    [
        ({"type": "int32"}, "1"),
        ({"type": "int16"}, 70000),
        ({"type": "int64"}, True),
        ({"type": "boolean"}, 1),
        ({"type": "string"}, 5),
        ({"type": "double"}, "abc"),
        ({"type": "bytes"}, "not base64!"),
        ({"type": "int32", "name": "io.debezium.time.Date"}, "2024-01-01"),
        ({"type": "string", "name": "io.debezium.time.ZonedTimestamp"}, "yesterday"),
        ({"type": "string", "name": "io.debezium.time.ZonedTime"}, "25 o'clock"),
        ({"type": "string", "name": "io.debezium.data.Uuid"}, "not-a-uuid"),
        ({"type": "string", "name": "io.debezium.data.Json"}, "{broken"),
        ({"type": "array", "items": {"type": "int32"}}, "[1]"),
    ],
)
def test_values_of_the_wrong_type_are_refused(schema, bad):
    convert = column(**schema).convert
    with pytest.raises((TypeMappingError, ValueError, TypeError)):
        convert(bad)


def test_inference_never_guesses():
    assert infer_column("c", "HL6ZGhQ=").duckdb_type == "VARCHAR"
    assert infer_column("c", 5).duckdb_type == "BIGINT"
    assert infer_column("c", 1.5).duckdb_type == "DOUBLE"
    assert infer_column("c", "NaN").duckdb_type == "DOUBLE"
    assert infer_column("c", {"scale": 2, "value": "AQ=="}).duckdb_type == "VARCHAR"
    assert infer_column("c", [1, 2]).duckdb_type == "JSON"
    assert infer_column("c", None) is None


@pytest.mark.parametrize(
    ("old", "new", "widening"),
    [
        ("INTEGER", "BIGINT", True),
        ("SMALLINT", "INTEGER", True),
        ("BIGINT", "INTEGER", False),
        ("FLOAT", "DOUBLE", True),
        ("DECIMAL(12,2)", "DECIMAL(16,4)", True),
        ("DECIMAL(12,2)", "DECIMAL(12,4)", False),  # fewer integer digits
        ("DECIMAL(12,4)", "DECIMAL(16,2)", False),  # fewer fraction digits
        ("INTEGER", "VARCHAR", False),
        ("VARCHAR", "INTEGER", False),
    ],
)
def test_widening_rules(old, new, widening):
    assert is_widening(old, new) is widening


def test_a_row_arrow_refuses_costs_one_dead_letter_not_the_batch():
    int_column = column(type="int32")
    schema = TableSchema((int_column,), mode="connect")

    def row(offset, value):
        return ChangeRow(
            record=RawRecord("p.s.t", 0, offset, None, b"{}"),
            table="s__t",
            schema=schema,
            values={"c": value},
            op="c",
            source_ts_us=None,
            lsn=None,
            position=None,
            tx_id=None,
            snapshot=False,
            unavailable=[],
            source_schema="s",
            source_table="t",
            key_columns=None,
        )

    segment = Segment("s__t", "connect", {"c": int_column}, [row(0, 1), row(1, "sneaked past"), row(2, 3)])
    rows = segment.close()
    assert rows.arrow.column("_kafka_offset").to_pylist() == [0, 2]
    assert [r.offset for r, _ in rows.refused] == [1]
    assert "does not fit" in rows.refused[0][1]
    assert [r.offset for r in rows.records] == [0, 1, 2]  # a quarantine would take them all
