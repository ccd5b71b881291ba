"""What makes a change event plain: the JSON types of the envelope fields the pydantic model checks.

A plain event is one whose every checked field has exactly an expected JSON type; both fast paths take only
plain events and send any other to the model (which takes it the same way, or says why not). Both read this
one description: the Python decoder (`decode._fast_change`) as Python types, the SQL decoder (`decode_sql`)
as the JSON types DuckDB's `json_type` reports for a chunk's signatures.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

STRING, INTEGER, BOOLEAN, NULL, OBJECT, ARRAY, FLOAT = (
    "string",
    "integer",
    "boolean",
    "null",
    "object",
    "array",
    "float",
)
ANY = frozenset({STRING, INTEGER, BOOLEAN, NULL, OBJECT, ARRAY, FLOAT})
# The Python type orjson parses each JSON type to (`type(True)` is bool, not int).
PYTHON_TYPES = {
    STRING: str,
    INTEGER: int,
    BOOLEAN: bool,
    NULL: type(None),
    OBJECT: dict,
    ARRAY: list,
    FLOAT: float,
}
# DuckDB's json_type names (an integer beyond 64 bits, NaN and Infinity read as DOUBLE).
DUCKDB_TYPES = {
    "VARCHAR": STRING,
    "BIGINT": INTEGER,
    "UBIGINT": INTEGER,
    "BOOLEAN": BOOLEAN,
    "NULL": NULL,
    "OBJECT": OBJECT,
    "ARRAY": ARRAY,
    "DOUBLE": FLOAT,
}


_INT64_MIN, _INT64_MAX = -(2**63), 2**63 - 1


def _of(*kinds: str) -> frozenset[str]:
    return frozenset(kinds)


@dataclass(frozen=True, slots=True)
class Block:
    """One object of the envelope: the JSON types each checked field may have (a missing field reads as
    null); a field not listed may be anything."""

    fields: Mapping[str, frozenset[str]]
    forbidden: frozenset[str] = frozenset()  # keys the model reads as another field's alias
    int64: tuple[str, ...] = ()  # integer fields the model bounds to 64 bits

    def python_check(self) -> Callable[[dict[str, Any]], bool]:
        """Whether a parsed block is plain: every checked field has one of its Python types, no forbidden
        key, integers in range. Compiled once into one expression from the description, as dataclasses
        compiles __init__: it runs for every event the Python decoder decodes, and as generated code it is
        as fast as the hand-written checks it replaced (a loop over the description measured 3x slower)."""
        namespace: dict[str, Any] = {}
        terms = [f"{name!r} not in block" for name in sorted(self.forbidden)]
        for name, kinds in self.fields.items():
            if kinds == ANY:
                continue
            types = sorted(PYTHON_TYPES[k].__name__ for k in kinds - {NULL})
            if len(types) == 1 and NULL in kinds:
                terms.append(f"((v := get({name!r})) is None or type(v) is {types[0]})")
            elif len(types) == 1:
                terms.append(f"type(get({name!r})) is {types[0]}")
            else:
                namespace[f"_t{len(namespace)}"] = frozenset(PYTHON_TYPES[k] for k in kinds)
                terms.append(f"type(get({name!r})) in _t{len(namespace) - 1}")
        # after the type checks: these are ints or None by then
        terms += [
            f"((v := get({name!r})) is None or {_INT64_MIN} <= v <= {_INT64_MAX})" for name in self.int64
        ]
        source = f"def check(block):\n    get = block.get\n    return {' and '.join(terms)}\n"
        exec(source, namespace)
        return namespace["check"]

    def refusal(self, where: str, duckdb_types: Mapping[str, str]) -> str | None:
        """Why a block whose fields have these DuckDB JSON types is not plain, or None."""
        for name in self.forbidden & duckdb_types.keys():
            return f"{where}.{name} is a field the model reads as another"
        for name, kinds in self.fields.items():
            kind = DUCKDB_TYPES.get(duckdb_types.get(name, "NULL"))
            if kind not in kinds:
                return f"{where}.{name} is {kind or duckdb_types[name]}"
        return None


CHANGE_OPS = frozenset({"r", "c", "u", "d", "t"})
SOURCE_TEXT_FIELDS = ("version", "connector", "name", "db", "schema", "table", "sequence")
SOURCE_INT_FIELDS = ("ts_ms", "ts_us", "ts_ns", "lsn")
# The transaction block (provide.transaction.metadata): none of it lands, but the model checks its `id`
# (a string, required) and these (integers or null).
TRANSACTION_INT_FIELDS = ("total_order", "data_collection_order")

ENVELOPE = Block(
    {
        "op": _of(STRING),  # and one of CHANGE_OPS
        "before": _of(OBJECT, NULL),
        "after": _of(OBJECT, NULL),
        "source": _of(OBJECT),
        "transaction": _of(OBJECT, NULL),  # and, when an object, plain as TRANSACTION says
        "ts_ms": _of(INTEGER, NULL),
    }
)
SOURCE = Block(
    {
        **dict.fromkeys(SOURCE_TEXT_FIELDS, _of(STRING, NULL)),
        **dict.fromkeys(SOURCE_INT_FIELDS, _of(INTEGER, NULL)),
        "snapshot": _of(STRING, BOOLEAN, NULL),  # "true", "last", "false", ... or a boolean
        "txId": ANY,  # landed as its text
    },
    forbidden=frozenset({"source_schema", "tx_id"}),
    int64=("lsn",),
)
TRANSACTION = Block({"id": _of(STRING), **dict.fromkeys(TRANSACTION_INT_FIELDS, _of(INTEGER, NULL))})
