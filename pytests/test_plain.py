"""ingest/core/plain.py is read two ways, as Python types (the Python decoder's fast path) and as DuckDB's
JSON types (the SQL decoder's signature check): both readings take and refuse exactly the same fields."""

import pytest

from ingest.core import plain

SAMPLES = {
    plain.STRING: "x",
    plain.INTEGER: 1,
    plain.BOOLEAN: True,
    plain.NULL: None,
    plain.OBJECT: {},
    plain.ARRAY: [],
    plain.FLOAT: 1.5,
}
DUCKDB = {kind: name for name, kind in plain.DUCKDB_TYPES.items() if name != "UBIGINT"}


BLOCKS = {"envelope": plain.ENVELOPE, "source": plain.SOURCE, "transaction": plain.TRANSACTION}


@pytest.mark.parametrize("block", BLOCKS.values(), ids=BLOCKS.keys())
def test_the_python_and_the_sql_reading_agree_field_by_field(block):
    check = block.python_check()
    base = {name: min(kinds) for name, kinds in block.fields.items()}  # a plain block
    assert check({n: SAMPLES[k] for n, k in base.items()})
    assert block.refusal("b", {n: DUCKDB[k] for n, k in base.items()}) is None
    for name, kinds in block.fields.items():
        for kind in SAMPLES:
            kinds_of = {**base, name: kind}
            python = check({n: SAMPLES[k] for n, k in kinds_of.items()})
            sql = block.refusal("b", {n: DUCKDB[k] for n, k in kinds_of.items()}) is None
            assert python == sql == (kind in kinds), (name, kind)
    for name in block.forbidden:
        assert not check({**{n: SAMPLES[k] for n, k in base.items()}, name: None})
        assert block.refusal("b", {**{n: DUCKDB[k] for n, k in base.items()}, name: "NULL"}) is not None


def test_a_missing_field_reads_as_null():
    check = plain.ENVELOPE.python_check()
    assert check({"op": "c", "source": {}})  # before, after, transaction, ts_ms missing
    assert plain.ENVELOPE.refusal("envelope", {"op": "VARCHAR", "source": "OBJECT"}) is None
    assert not check({"op": "c"})  # source is required
    assert plain.ENVELOPE.refusal("envelope", {"op": "VARCHAR"}) is not None


def test_the_source_lsn_is_bounded_to_64_bits():
    check = plain.SOURCE.python_check()
    assert check({"lsn": 2**63 - 1}) and not check({"lsn": 2**63})
