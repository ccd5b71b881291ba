"""The types file: a source's own column types, for change events that carry no Connect schema.

`ingest types pull` writes one file per source schema under `profiles/types/` (reviewed and versioned like
the models); it can be written by hand where the source is not reachable. Its column types are the source's
own names (PostgreSQL's `format_type`: `numeric(24,4)`, `timestamp(3) without time zone`, `text[]`), and
its `connector` block says how the Debezium connector encodes values (its settings of the same names).
Each declared column becomes the Connect field schema the connector would have sent with
`schemas.enable=true`, so a schemaless event is typed exactly as with schemas on (`typemap.from_connect`).
A type this module does not know is left to inference, as a column the file does not list. All pure.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from ingest.core.envelope import ConnectSchema
from ingest.core.typemap import ColumnType, TypeMappingError, from_connect


class TypesFileError(ValueError):
    """A types file cannot be read; the message names the file and what is wrong."""


class ConnectorEncoding(BaseModel):
    """The connector settings that decide how a value is written when no schema says it."""

    model_config = ConfigDict(populate_by_name=True, extra="forbid")

    decimal_handling_mode: Literal["precise", "string", "double"] = Field(
        "precise", alias="decimal.handling.mode"
    )
    time_precision_mode: Literal["adaptive", "adaptive_time_microseconds", "connect"] = Field(
        "adaptive", alias="time.precision.mode"
    )
    binary_handling_mode: Literal["bytes", "base64", "base64-url-safe", "hex"] = Field(
        "bytes", alias="binary.handling.mode"
    )
    interval_handling_mode: Literal["numeric", "string"] = Field("numeric", alias="interval.handling.mode")


class DeclaredColumn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    type: str
    not_null: bool = False
    enum: list[str] | None = None  # the labels of an enum type (of the element type, for an enum array)


class DeclaredTable(BaseModel):
    model_config = ConfigDict(extra="forbid")

    primary_key: list[str] = Field(default_factory=list)
    columns: dict[str, DeclaredColumn]


class TypesFile(BaseModel):
    """One source schema's tables, as `ingest types pull` writes it."""

    model_config = ConfigDict(populate_by_name=True, extra="forbid")

    source: Literal["postgresql"] = "postgresql"
    # The connector's topic prefix (Debezium topic.prefix), where two sources have schemas of one name;
    # None: the file types that schema of every source.
    server: str | None = None
    schema_name: str = Field(alias="schema")
    connector: ConnectorEncoding = Field(default_factory=ConnectorEncoding)
    tables: dict[str, DeclaredTable]


# ------------------------------------------------------------------------------- source type -> Connect
_DECIMAL = "org.apache.kafka.connect.data.Decimal"
_TEXT_TYPES = frozenset(
    {
        "text",
        "character varying",
        "character",
        "varchar",
        "char",
        '"char"',
        "name",
        "citext",
        "inet",
        "cidr",
        "macaddr",
        "macaddr8",
        "tsvector",
        "tsquery",
    }
)
_PLAIN = {
    "smallint": "int16",
    "integer": "int32",
    "bigint": "int64",
    "real": "float",
    "double precision": "double",
    "boolean": "boolean",
    "oid": "int64",
}
_NAMED = {
    "uuid": ("string", "io.debezium.data.Uuid"),
    "json": ("string", "io.debezium.data.Json"),
    "jsonb": ("string", "io.debezium.data.Json"),
    "xml": ("string", "io.debezium.data.Xml"),
    "time with time zone": ("string", "io.debezium.time.ZonedTime"),
    "timestamp with time zone": ("string", "io.debezium.time.ZonedTimestamp"),
}


def split_type(source_type: str) -> tuple[str, list[int], int]:
    """(base name, its integer arguments, array dimensions) of a `format_type` name:
    `timestamp(3) without time zone` -> ("timestamp without time zone", [3], 0);
    `text[]` -> ("text", [], 1)."""
    text = source_type.strip().lower()
    dimensions = 0
    while text.endswith("[]"):
        text, dimensions = text[:-2].rstrip(), dimensions + 1
    opening, closing = text.find("("), text.find(")")
    if opening < 0 or closing < opening:
        return " ".join(text.split()), [], dimensions
    base = " ".join(f"{text[:opening]} {text[closing + 1 :]}".split())
    args = [int(a) for a in text[opening + 1 : closing].split(",") if a.strip().isdigit()]
    return base, args, dimensions


def connect_field(column: DeclaredColumn, encoding: ConnectorEncoding) -> ConnectSchema | None:
    """The Connect field schema Debezium's PostgreSQL connector sends for a column of this type, or None
    for a type it does not know (the column's type is then inferred from its values)."""
    base, args, dimensions = split_type(column.type)
    item = _scalar_field(base, args, column.enum, encoding)
    if item is None:
        return None
    optional = not column.not_null
    if dimensions:
        # Debezium sends a one-dimensional array of optional elements, whatever the declared dimensions.
        return ConnectSchema(
            type="array", items=item.model_copy(update={"optional": True}), optional=optional
        )
    return item.model_copy(update={"optional": optional})


def _scalar_field(
    base: str, args: list[int], enum: list[str] | None, encoding: ConnectorEncoding
) -> ConnectSchema | None:
    if enum is not None:
        return ConnectSchema(
            type="string", name="io.debezium.data.Enum", parameters={"allowed": ",".join(enum)}
        )
    if base in _PLAIN:
        return ConnectSchema(type=_PLAIN[base])
    if base in _TEXT_TYPES:
        return ConnectSchema(type="string")
    if base in _NAMED:
        kind, name = _NAMED[base]
        return ConnectSchema(type=kind, name=name)
    if base in ("numeric", "decimal", "money"):
        return _decimal_field(base, args, encoding)
    if base == "date":
        connect = encoding.time_precision_mode == "connect"
        return ConnectSchema(
            type="int32", name="org.apache.kafka.connect.data.Date" if connect else "io.debezium.time.Date"
        )
    if base == "time without time zone" or base == "time":
        return _time_field(args[0] if args else 6, encoding)
    if base == "timestamp without time zone" or base == "timestamp":
        return _timestamp_field(args[0] if args else 6, encoding)
    if base == "interval":
        if encoding.interval_handling_mode == "string":
            return ConnectSchema(type="string", name="io.debezium.time.Interval")
        return ConnectSchema(type="int64", name="io.debezium.time.MicroDuration")
    if base == "bytea":
        return ConnectSchema(type="bytes" if encoding.binary_handling_mode == "bytes" else "string")
    if base in ("bit", "bit varying"):
        length = args[0] if args else 1
        if base == "bit" and length == 1:
            return ConnectSchema(type="boolean")
        return ConnectSchema(type="bytes", name="io.debezium.data.Bits", parameters={"length": str(length)})
    return None


def _decimal_field(base: str, args: list[int], encoding: ConnectorEncoding) -> ConnectSchema:
    if encoding.decimal_handling_mode == "string":
        return ConnectSchema(type="string")
    if encoding.decimal_handling_mode == "double":
        return ConnectSchema(type="double")
    if base == "money":
        return ConnectSchema(type="bytes", name=_DECIMAL, parameters={"scale": "2"})
    if not args:  # numeric without precision: Debezium's struct of scale and unscaled bytes
        return ConnectSchema(type="struct", name="io.debezium.data.VariableScaleDecimal")
    precision, scale = args[0], args[1] if len(args) > 1 else 0
    return ConnectSchema(
        type="bytes",
        name=_DECIMAL,
        parameters={"scale": str(scale), "connect.decimal.precision": str(precision)},
    )


def _time_field(precision: int, encoding: ConnectorEncoding) -> ConnectSchema:
    if encoding.time_precision_mode == "connect":
        return ConnectSchema(type="int32", name="org.apache.kafka.connect.data.Time")
    if encoding.time_precision_mode == "adaptive" and precision <= 3:
        return ConnectSchema(type="int32", name="io.debezium.time.Time")
    return ConnectSchema(type="int64", name="io.debezium.time.MicroTime")


def _timestamp_field(precision: int, encoding: ConnectorEncoding) -> ConnectSchema:
    if encoding.time_precision_mode == "connect":
        return ConnectSchema(type="int64", name="org.apache.kafka.connect.data.Timestamp")
    if precision <= 3:
        return ConnectSchema(type="int64", name="io.debezium.time.Timestamp")
    return ConnectSchema(type="int64", name="io.debezium.time.MicroTimestamp")


# ------------------------------------------------------------------------------------------- loading
@dataclass(frozen=True)
class TableTypes:
    """One table's declared columns as column types (a column of a type not known here is left out: its
    values are inferred, as those of a column the file does not list)."""

    schema: str
    table: str
    columns: dict[str, ColumnType]
    server: str | None = None  # the topic prefix the file is of; None: every server's


@dataclass(frozen=True)
class SourceTypes:
    """Every types file of a project, by (server or None, source schema, table)."""

    tables: dict[tuple[str | None, str, str], TableTypes] = field(default_factory=dict)

    def of(self, schema: str | None, table: str | None, server: str | None = None) -> TableTypes | None:
        """The table's types: from the file of its server where there is one, else from its schema's."""
        if schema is None or table is None:
            return None
        return self.tables.get((server, schema, table)) or self.tables.get((None, schema, table))


def table_types(
    schema: str,
    table: str,
    declared: DeclaredTable,
    encoding: ConnectorEncoding,
    server: str | None = None,
) -> TableTypes:
    columns: dict[str, ColumnType] = {}
    for name, column in declared.columns.items():
        connect = connect_field(column, encoding)
        try:
            if connect is not None:
                columns[name] = from_connect(name, connect)
        except TypeMappingError:
            continue
    return TableTypes(schema, table, columns, server)


_FIX = " (correct the file, or write it again with `ingest types pull`)"


def parse_types_file(text: str, where: str) -> TypesFile:
    try:
        document = yaml.safe_load(text)
        return TypesFile.model_validate(document)
    except yaml.YAMLError as error:
        raise TypesFileError(f"{where} is not valid YAML: {error}{_FIX}") from None
    except ValidationError as error:
        first = error.errors()[0]
        at = ".".join(str(p) for p in first["loc"])
        raise TypesFileError(f"{where}: {at}: {first['msg']}{_FIX}") from None


def source_types_of(files: Iterable[TypesFile]) -> SourceTypes:
    return SourceTypes(
        {
            (types.server, types.schema_name, name): table_types(
                types.schema_name, name, declared, types.connector, types.server
            )
            for types in files
            for name, declared in types.tables.items()
        }
    )


def load_types_files(directory: Path) -> list[TypesFile]:
    """Every `*.yml` under `directory`, validated (none, or no directory: [])."""
    if not directory.is_dir():
        return []
    return [parse_types_file(path.read_text(), str(path)) for path in sorted(directory.glob("*.yml"))]


def load_source_types(directory: Path) -> SourceTypes:
    """The column types of every types file under `directory`."""
    return source_types_of(load_types_files(directory))
