"""Debezium / Kafka Connect types to DuckDB types, and the value conversions between them.

Each column gets a `ColumnType`: the DuckDB type of the staging column, the Arrow type the batch carries it
in, a Python conversion from the JSON value to that Arrow value, and optionally a SQL expression that finishes
the conversion inside DuckDB (for types Arrow cannot carry, such as UUID or TIMETZ). All of it is pure.

With a Connect schema every logical type maps exactly. Without one the types are inferred from the values,
and a value whose meaning needs the schema stays raw text rather than becoming a wrong number.
"""

from __future__ import annotations

import base64
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal
from typing import Any, TypedDict
from uuid import UUID

import orjson
import pyarrow as pa

from ingest.core.envelope import ConnectSchema

Converter = Callable[[Any], Any]
MAX_DECIMAL_PRECISION = 38


class TypeMappingError(ValueError):
    """A value does not fit the type its column was given."""


@dataclass(frozen=True)
class ColumnType:
    name: str
    duckdb_type: str
    arrow_type: pa.DataType
    source_type: str
    optional: bool = True
    convert: Converter | None = None
    # SQL turning the Arrow value into the DuckDB type; "{}" stands for the column reference.
    sql: str | None = None
    is_binary: bool = False

    def describe(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "type": self.duckdb_type,
            "source_type": self.source_type,
            "optional": self.optional,
        }


@dataclass(frozen=True)
class TableSchema:
    """The typed columns of one version of a source table's row image."""

    columns: tuple[ColumnType, ...]
    mode: str  # "connect" (the Connect schema), "declared" (the types file) or "inferred" (the values)
    by_name: dict[str, ColumnType] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "by_name", {c.name: c for c in self.columns})


# ---------------------------------------------------------------------------------------------- values
# Every converter checks what it receives: a value of the wrong JSON type becomes a dead letter for its
# event, never a failed batch.
def checked_int(bits: int) -> Converter:
    low, high = -(2 ** (bits - 1)), 2 ** (bits - 1)

    def convert(value: Any) -> int:
        if type(value) is not int:
            raise TypeMappingError(f"expected an integer, got {type(value).__name__}")
        if not low <= value < high:
            raise TypeMappingError(f"{value} does not fit in {bits} bits")
        return value

    return convert


def _checked(kind: type) -> Converter:
    def convert(value: Any) -> Any:
        if type(value) is not kind:
            raise TypeMappingError(f"expected {kind.__name__}, got {type(value).__name__}")
        return value

    return convert


_TEXT = _checked(str)
_BOOL = _checked(bool)


def zoned_timestamp_text(value: Any) -> str:
    """ISO-8601 with an offset, or PostgreSQL's infinities; parsed here so SQL's cast cannot fail."""
    text = _TEXT(value)
    if text not in ("infinity", "-infinity"):
        datetime.fromisoformat(text)
    return text


def uuid_text(value: Any) -> str:
    return str(UUID(_TEXT(value)))


def json_document_text(value: Any) -> str:
    text = _TEXT(value)
    orjson.loads(text)
    return text


_ZONED_TIME = re.compile(r"^\d{2}:\d{2}:\d{2}(\.\d{1,9})?(Z|[+-]\d{2}(:?\d{2})?)$")


def _float(value: Any) -> float:
    # Jackson writes NaN and the infinities as JSON strings.
    return float(value)


def _base64(value: Any) -> bytes:
    return base64.b64decode(_TEXT(value), validate=True)


def _unscaled_decimal(raw: bytes, scale: int) -> Decimal:
    """Kafka Connect's Decimal: a big-endian two's-complement unscaled integer."""
    unscaled = int.from_bytes(raw, "big", signed=True)
    sign = 1 if unscaled < 0 else 0
    digits = tuple(int(d) for d in str(abs(unscaled)))
    return Decimal((sign, digits, -scale))


def decimal_converter(scale: int) -> Converter:
    def convert(value: Any) -> Decimal:
        if isinstance(value, str):
            return _unscaled_decimal(_base64(value), scale)
        if isinstance(value, (int, float)):  # decimal.format=NUMERIC
            return Decimal(repr(value)).quantize(Decimal(1).scaleb(-scale))
        raise TypeMappingError(f"expected a base64 decimal, got {type(value).__name__}")

    return convert


def variable_scale_decimal_text(value: Any) -> str:
    """io.debezium.data.VariableScaleDecimal {scale, value} as exact decimal text."""
    if not isinstance(value, dict) or "scale" not in value or "value" not in value:
        raise TypeMappingError("expected a VariableScaleDecimal struct {scale, value}")
    number = _unscaled_decimal(_base64(value["value"]), int(value["scale"]))
    return format(number, "f")


def zoned_time_text(value: Any) -> str:
    """Debezium writes UTC times as '11:45:30.5Z'; DuckDB's TIMETZ wants an explicit offset."""
    text = _TEXT(value)
    if not _ZONED_TIME.match(text):
        raise TypeMappingError(f"not a time with zone: {text!r}")
    return text[:-1] + "+00" if text.endswith("Z") else text


_ISO_DURATION = re.compile(
    r"^(?P<sign>-)?P(?:(?P<y>-?\d+)Y)?(?:(?P<mo>-?\d+)M)?(?:(?P<w>-?\d+)W)?(?:(?P<d>-?\d+)D)?"
    r"(?:T(?:(?P<h>-?\d+)H)?(?:(?P<mi>-?\d+)M)?(?:(?P<s>-?\d+(?:\.\d+)?)S)?)?$"
)


def iso_interval(value: Any) -> pa.MonthDayNano:
    """io.debezium.time.Interval (interval.handling.mode=string), e.g. 'P1Y2M3DT4H5M6.78S'."""
    match = _ISO_DURATION.match(_TEXT(value))
    if not match:
        raise TypeMappingError(f"not an ISO-8601 duration: {value!r}")
    part = {k: (v or "0") for k, v in match.groupdict().items()}
    sign = -1 if match.group("sign") else 1
    months = int(part["y"]) * 12 + int(part["mo"])
    days = int(part["w"]) * 7 + int(part["d"])
    nanos = (int(part["h"]) * 3600 + int(part["mi"]) * 60) * 10**9 + int(Decimal(part["s"]) * 10**9)
    return pa.MonthDayNano([sign * months, sign * days, sign * nanos])


def iso_interval_text(value: Any) -> str:
    iso_interval(value)
    return value


def bits_text(length: int) -> Converter:
    """io.debezium.data.Bits: little-endian bytes (Java BitSet) to a '0101' string of `length` bits."""

    def convert(value: Any) -> str:
        number = int.from_bytes(_base64(_TEXT(value)), "little")
        return format(number, f"0{length}b")[-length:] if length else format(number, "b")

    return convert


def json_text(value: Any) -> str:
    return value if isinstance(value, str) else orjson.dumps(value).decode()


def _list_of(item: ColumnType) -> Converter:
    inner = item.convert or (lambda v: v)

    def convert(values: Any) -> list[Any]:
        if type(values) is not list:
            raise TypeMappingError(f"expected an array, got {type(values).__name__}")
        return [None if v is None else inner(v) for v in values]

    return convert


# ------------------------------------------------------------------------------------- Connect schemas
_PRIMITIVES: dict[str, tuple[str, pa.DataType, Converter | None]] = {
    "int8": ("TINYINT", pa.int8(), checked_int(8)),
    "int16": ("SMALLINT", pa.int16(), checked_int(16)),
    "int32": ("INTEGER", pa.int32(), checked_int(32)),
    "int64": ("BIGINT", pa.int64(), checked_int(64)),
    "float": ("FLOAT", pa.float32(), _float),
    "float32": ("FLOAT", pa.float32(), _float),
    "double": ("DOUBLE", pa.float64(), _float),
    "float64": ("DOUBLE", pa.float64(), _float),
    "boolean": ("BOOLEAN", pa.bool_(), _BOOL),
    "string": ("VARCHAR", pa.string(), _TEXT),
    "bytes": ("BLOB", pa.binary(), _base64),
}

# Semantic types whose integer payload Arrow carries natively (units differ: check each one).
_TEMPORAL: dict[str, tuple[str, pa.DataType]] = {
    "io.debezium.time.Date": ("DATE", pa.date32()),  # days since epoch
    "org.apache.kafka.connect.data.Date": ("DATE", pa.date32()),
    "io.debezium.time.Time": ("TIME", pa.time32("ms")),  # ms since midnight
    "org.apache.kafka.connect.data.Time": ("TIME", pa.time32("ms")),
    "io.debezium.time.MicroTime": ("TIME", pa.time64("us")),
    "io.debezium.time.NanoTime": ("TIME", pa.time64("ns")),
    "io.debezium.time.Timestamp": ("TIMESTAMP", pa.timestamp("ms")),  # timestamp(0..3)
    "org.apache.kafka.connect.data.Timestamp": ("TIMESTAMP", pa.timestamp("ms")),
    "io.debezium.time.MicroTimestamp": ("TIMESTAMP", pa.timestamp("us")),  # timestamp(4..6)
    "io.debezium.time.NanoTimestamp": ("TIMESTAMP", pa.timestamp("ns")),
}
# Durations stay exact integer counts: DuckLake writes INTERVAL to Parquet's INTERVAL type, which keeps only
# milliseconds, wraps a time part past ~49.7 days and refuses negative values (measured: 429 days read back
# as 31 days, and a negative interval failed the whole write).
_DURATIONS = {
    "io.debezium.time.MicroDuration": "microseconds",
    "io.debezium.time.NanoDuration": "nanoseconds",
}


def _source_type(schema: ConnectSchema) -> str:
    text = schema.name or schema.type
    if schema.parameters:
        params = ",".join(f"{k}={v}" for k, v in sorted(schema.parameters.items()))
        text += f"({params})"
    return text


class _Common(TypedDict):
    """The fields every column type of a Connect field shares."""

    name: str
    source_type: str
    optional: bool


def from_connect(name: str, schema: ConnectSchema) -> ColumnType:
    """The column type of one field of a Connect `Value` struct."""
    source_type = _source_type(schema)
    common = _Common(name=name, source_type=source_type, optional=schema.optional)
    semantic = schema.name or ""
    params = schema.parameters or {}

    if semantic == "org.apache.kafka.connect.data.Decimal":
        scale = int(params.get("scale", "0"))
        precision = int(params.get("connect.decimal.precision", str(MAX_DECIMAL_PRECISION)))
        if precision > MAX_DECIMAL_PRECISION or scale > precision:
            to_decimal = decimal_converter(scale)
            return ColumnType(
                duckdb_type="VARCHAR",
                arrow_type=pa.string(),
                convert=lambda v: format(to_decimal(v), "f"),
                **common,
            )
        return ColumnType(
            duckdb_type=f"DECIMAL({precision},{scale})",
            arrow_type=pa.decimal128(precision, scale),
            convert=decimal_converter(scale),
            **common,
        )
    if semantic == "io.debezium.data.VariableScaleDecimal":
        return ColumnType(
            duckdb_type="VARCHAR", arrow_type=pa.string(), convert=variable_scale_decimal_text, **common
        )
    if semantic in _TEMPORAL:
        duckdb_type, arrow_type = _TEMPORAL[semantic]
        bits = 32 if arrow_type in (pa.date32(), pa.time32("ms")) else 64
        return ColumnType(duckdb_type=duckdb_type, arrow_type=arrow_type, convert=checked_int(bits), **common)
    if semantic in _DURATIONS:
        return ColumnType(
            duckdb_type="BIGINT",
            arrow_type=pa.int64(),
            convert=checked_int(64),
            **(common | {"source_type": f"{source_type} in {_DURATIONS[semantic]}"}),
        )
    if semantic == "io.debezium.time.ZonedTimestamp":
        return ColumnType(
            duckdb_type="TIMESTAMP WITH TIME ZONE",
            arrow_type=pa.string(),
            convert=zoned_timestamp_text,
            sql="cast({} as timestamptz)",
            **common,
        )
    if semantic == "io.debezium.time.ZonedTime":
        return ColumnType(
            duckdb_type="TIME WITH TIME ZONE",
            arrow_type=pa.string(),
            convert=zoned_time_text,
            sql="cast({} as timetz)",
            **common,
        )
    if semantic == "io.debezium.time.Interval":
        # ISO-8601 text (interval.handling.mode=string), checked and kept exact; see _DURATIONS for why
        # not INTERVAL.
        return ColumnType(duckdb_type="VARCHAR", arrow_type=pa.string(), convert=iso_interval_text, **common)
    if semantic == "io.debezium.data.Uuid":
        return ColumnType(
            duckdb_type="UUID", arrow_type=pa.string(), convert=uuid_text, sql="cast({} as uuid)", **common
        )
    if semantic == "io.debezium.data.Json":
        return ColumnType(
            duckdb_type="JSON",
            arrow_type=pa.string(),
            convert=json_document_text,
            sql="cast({} as json)",
            **common,
        )
    if semantic == "io.debezium.data.Bits" and schema.type == "bytes":
        length = int(params.get("length", "0"))
        return ColumnType(
            duckdb_type="BIT",
            arrow_type=pa.string(),
            convert=bits_text(length),
            sql="cast({} as bit)",
            **common,
        )
    if schema.type == "array" and schema.items is not None:
        item = from_connect("element", schema.items)
        if item.sql is None:
            return ColumnType(
                duckdb_type=f"{item.duckdb_type}[]",
                arrow_type=pa.list_(item.arrow_type),
                convert=_list_of(item),
                is_binary=item.is_binary,
                **common,
            )
        element_sql = item.sql.format("element")
        return ColumnType(
            duckdb_type=f"{item.duckdb_type}[]",
            arrow_type=pa.list_(item.arrow_type),
            convert=_list_of(item),
            sql=f"list_transform({{}}, element -> {element_sql})",
            **common,
        )
    if schema.type in ("struct", "map"):
        return ColumnType(
            duckdb_type="JSON", arrow_type=pa.string(), convert=json_text, sql="cast({} as json)", **common
        )
    if schema.type in _PRIMITIVES:
        duckdb_type, arrow_type, convert = _PRIMITIVES[schema.type]
        return ColumnType(
            duckdb_type=duckdb_type,
            arrow_type=arrow_type,
            convert=convert,
            is_binary=schema.type == "bytes",
            **common,
        )
    raise TypeMappingError(f"column {name!r}: unsupported Connect type {source_type}")


def table_schema_from_connect(value_schema: ConnectSchema) -> TableSchema:
    """The row-image schema of a Debezium `Envelope` (its `before`/`after` struct)."""
    row = value_schema.field_schema("after") or value_schema.field_schema("before")
    if row is None or row.fields is None:
        raise TypeMappingError("the envelope schema has no before/after struct")
    return TableSchema(tuple(from_connect(f.field or "", f) for f in row.fields), mode="connect")


def key_columns_from_connect(key_schema: ConnectSchema | None) -> list[str]:
    if key_schema is None or key_schema.fields is None:
        return []
    return [f.field or "" for f in key_schema.fields]


# ----------------------------------------------------------------------------------- inference (no schema)


def _inferred_float(value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float, str)):
        raise TypeMappingError(f"expected a number, got {type(value).__name__}")
    return float(value)


def _inferred_int(value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeMappingError(f"expected an integer, got {type(value).__name__}")
    return value


def _inferred_bool(value: Any) -> bool:
    if not isinstance(value, bool):
        raise TypeMappingError(f"expected a boolean, got {type(value).__name__}")
    return value


def _inferred_text(value: Any) -> str:
    if isinstance(value, (dict, list)):
        raise TypeMappingError(f"expected text, got {type(value).__name__}")
    return value if isinstance(value, str) else orjson.dumps(value).decode()


SPECIAL_FLOATS = frozenset({"NaN", "Infinity", "-Infinity"})
# Inferred converters that return a value of the JSON type they infer from unchanged (the decoder skips them
# when every value already has that type).
TYPE_CHECK_ONLY_CONVERTERS = frozenset({_inferred_int, _inferred_float, _inferred_bool, _inferred_text})


def is_variable_scale_decimal(value: Any) -> bool:
    return isinstance(value, dict) and set(value) == {"scale", "value"} and isinstance(value["value"], str)


INFERRED = " (inferred)"  # ends the source type of a column typed by its values, not by a schema


def is_inferred(source_type: str | None) -> bool:
    """Whether a column's source type says it was inferred from values (no schema, no types file typed it)."""
    return source_type is not None and source_type.endswith(INFERRED)


def infer_column(name: str, value: Any) -> ColumnType | None:
    """The type a schemaless value implies; None while only nulls have been seen."""
    if value is None:
        return None
    if isinstance(value, bool):
        return ColumnType(name, "BOOLEAN", pa.bool_(), "boolean" + INFERRED, convert=_inferred_bool)
    if isinstance(value, int):
        return ColumnType(name, "BIGINT", pa.int64(), "integer" + INFERRED, convert=_inferred_int)
    if isinstance(value, float):
        return ColumnType(name, "DOUBLE", pa.float64(), "number" + INFERRED, convert=_inferred_float)
    if isinstance(value, str) and value in SPECIAL_FLOATS:
        # Jackson writes float NaN and the infinities as strings; a text column holding only these is rare.
        return ColumnType(name, "DOUBLE", pa.float64(), "number" + INFERRED, convert=_inferred_float)
    if isinstance(value, str):
        # Raw text: without the schema a base64 decimal or a special float cannot be told from text.
        return ColumnType(name, "VARCHAR", pa.string(), "string" + INFERRED, convert=_inferred_text)
    if is_variable_scale_decimal(value):
        return ColumnType(
            name,
            "VARCHAR",
            pa.string(),
            "VariableScaleDecimal" + INFERRED,
            convert=variable_scale_decimal_text,
        )
    return ColumnType(
        name,
        "JSON",
        pa.string(),
        type(value).__name__ + INFERRED,
        convert=json_text,
        sql="cast({} as json)",
    )


# ------------------------------------------------------------------------------------------- evolution
_INTEGER_RANK = {"TINYINT": 1, "SMALLINT": 2, "INTEGER": 3, "BIGINT": 4}
_DECIMAL = re.compile(r"^DECIMAL\((\d+),(\d+)\)$")


def is_widening(old: str, new: str) -> bool:
    """True if a column of type `old` can become `new` without losing a value (and DuckLake allows it)."""
    if old == new:
        return True
    if old in _INTEGER_RANK and new in _INTEGER_RANK:
        return _INTEGER_RANK[new] >= _INTEGER_RANK[old]
    if old == "FLOAT" and new == "DOUBLE":
        return True
    old_dec, new_dec = _DECIMAL.match(old), _DECIMAL.match(new)
    if old_dec and new_dec:
        old_p, old_s = int(old_dec.group(1)), int(old_dec.group(2))
        new_p, new_s = int(new_dec.group(1)), int(new_dec.group(2))
        return new_s >= old_s and (new_p - new_s) >= (old_p - old_s)
    return False
