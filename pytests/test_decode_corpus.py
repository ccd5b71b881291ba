"""Every record of every variant of the real Debezium corpus decodes, with values traced to the corpus SQL.

Record positions (topic@offset) and the SQL behind them are listed in the corpus README.
"""

import math
from decimal import Decimal
from pathlib import Path

import pytest

from conftest import CORPUS, VARIANTS
from ingest.core.decode import (
    ChangeRow,
    DeadLetter,
    Decoder,
    MessageRecord,
    RawRecord,
    Skipped,
    TransactionRecord,
)
from ingest.devtools.corpus import read_variant

pytestmark = pytest.mark.skipif(not VARIANTS, reason="the shared Debezium corpus is not present")


def decode_variant(variant: str) -> dict[tuple[str, int, int], object]:
    decoder = Decoder()
    results = {}
    for record in read_variant(CORPUS / variant):
        raw = RawRecord(
            record.topic, record.partition, record.offset, record.key, record.value, record.headers
        )
        table = record.topic.split(".", 1)[1]
        results[(table, record.partition, record.offset)] = decoder.decode(raw)
    return results


def at(results: dict, table: str, offset: int):
    """The record at `table@offset` (any partition: the 4-partition variant spreads them)."""
    matches = [v for (t, _, o), v in results.items() if t == table and o == offset]
    assert len(matches) == 1, f"{table}@{offset}: {len(matches)} matches"
    return matches[0]


# In the 4-partition variant offsets count per partition, so the README's topic@offset does not apply.
ORDERED_VARIANTS = [v for v in VARIANTS if "4partitions" not in v]


@pytest.fixture(scope="module", params=VARIANTS)
def any_variant(request):
    return request.param, decode_variant(request.param)


@pytest.fixture(scope="module", params=ORDERED_VARIANTS)
def variant(request):
    return request.param, decode_variant(request.param)


def test_every_record_decodes_and_kinds_match_the_manifest(any_variant):
    _, results = any_variant
    assert not [v.error for v in results.values() if isinstance(v, DeadLetter)]
    kinds = {}
    for value in results.values():
        kinds[type(value).__name__] = kinds.get(type(value).__name__, 0) + 1
    # 133 records: 71 data events, 6 tombstones, 54 transaction BEGIN/END, 2 logical messages
    assert kinds == {"ChangeRow": 71, "Skipped": 6, "TransactionRecord": 54, "MessageRecord": 2}
    assert all(v.reason == "tombstone" for v in results.values() if isinstance(v, Skipped))


def test_ops_snapshot_flags_and_positions(any_variant):
    _, results = any_variant
    rows = [v for v in results.values() if isinstance(v, ChangeRow)]
    ops = {}
    for row in rows:
        ops[row.op] = ops.get(row.op, 0) + 1
    assert ops == {"r": 39, "c": 16, "u": 9, "d": 6, "t": 1}
    # source.snapshot takes five string values; every snapshot record must be flagged
    assert all(row.snapshot == (row.op == "r") for row in rows)
    assert all(row.lsn is not None and row.source_ts_us is not None for row in rows)


def test_pk_change_truncate_and_tombstones(variant):
    _, results = variant
    delete, tombstone, create = (at(results, "inventory.products", o) for o in (11, 12, 13))
    assert (delete.op, delete.values["id"]) == ("d", 110)
    assert isinstance(tombstone, Skipped) and tombstone.reason == "tombstone"
    assert (create.op, create.values["id"]) == ("c", 210)
    assert delete.lsn == create.lsn  # one UPDATE statement
    truncate = at(results, "inventory.products_on_hand", 10)
    assert truncate.op == "t" and truncate.values == {}
    # a keyless table's delete: key null, full `before` (REPLICA IDENTITY FULL)
    audit_delete = at(results, "inventory.audit_log", 4)
    assert audit_delete.op == "d" and audit_delete.values["actor"] == "alice"


def test_replica_identity_images(variant):
    _, results = variant
    customer_update = at(results, "inventory.customers", 5)
    assert customer_update.op == "u" and customer_update.values["email"] == "sarah.thompson@acme.com"
    order_delete = at(results, "inventory.orders", 4)  # DEFAULT identity: only the key is real
    assert order_delete.op == "d" and order_delete.values["id"] == 10004


def test_toast_placeholders_become_null_and_are_listed(variant):
    _, results = variant
    untouched = at(results, "inventory.type_zoo", 6)
    assert untouched.unavailable == ["c_big_text", "c_big_bytea"]
    assert "c_big_text" not in untouched.values and "c_big_bytea" not in untouched.values
    text_changed = at(results, "inventory.type_zoo", 7)
    assert text_changed.unavailable == ["c_big_bytea"]
    assert len(text_changed.values["c_big_text"]) == 150 * 32
    assert at(results, "inventory.type_zoo", 10).unavailable == ["c_big_text", "c_big_bytea"]


def test_schema_changes_reach_the_rows(variant):
    _, results = variant
    assert at(results, "inventory.customers", 9).values["phone"] == "+1-555-0100"
    assert at(results, "inventory.orders", 7).values["quantity"] == 5_000_000_000
    assert "zip" not in at(results, "inventory.addresses", 11).values
    assert at(results, "inventory.addresses", 10).values["zip"] == "94105"


def test_transactions_and_messages(any_variant):
    _, results = any_variant
    transactions = [v.event for v in results.values() if isinstance(v, TransactionRecord)]
    assert sorted({t.status for t in transactions}) == ["BEGIN", "END"]
    # the 5-table transaction: one txId shared by BEGIN, END and all five data events
    multi = [t for t in transactions if t.status == "END" and t.event_count == 5]
    assert len(multi) == 1
    rows = [v for v in results.values() if isinstance(v, ChangeRow) and v.tx_id == multi[0].tx_id]
    assert len(rows) == 5
    messages = sorted(
        (v.message for v in results.values() if isinstance(v, MessageRecord)), key=lambda m: m.source.lsn
    )
    assert [m.transaction is not None for m in messages] == [True, False]
    assert messages[1].source.tx_id is None


# ---------------------------------------------------------------- typed values, by decimal mode and schemas
def type_zoo(variant_name: str) -> dict[int, ChangeRow]:
    results = decode_variant(variant_name)
    return {o: at(results, "inventory.type_zoo", o) for o in (0, 2, 4, 5, 10)}


@pytest.mark.parametrize(
    "name", [v for v in VARIANTS if "precise" in v and v.endswith("schemas") and "noschemas" not in v]
)
def test_precise_with_schemas_decodes_exact_decimals(name):
    zoo = type_zoo(name)
    first = zoo[0].values
    assert first["c_numeric_12_2"] == Decimal("1234567890.12")
    assert zoo[0].schema.by_name["c_numeric_12_2"].duckdb_type == "DECIMAL(12,2)"
    assert first["c_numeric"] == "3.14159265358979323846264338327950288419"  # 39 digits, exact
    assert first["c_money"] == Decimal("1234.56")
    edge = zoo[4].values  # row 3: edge values
    assert edge["c_numeric_12_2"] == Decimal("-9999999999.99")
    assert edge["c_money"] == Decimal("-0.01")
    assert "c_numeric" not in edge  # NaN numeric arrives as null in precise mode
    assert zoo[5].values["c_numeric"] == "0.000000000000000000000000000001"
    widened = zoo[10]
    assert widened.values["c_numeric_12_2"] == Decimal("123456789012.3456")
    assert widened.schema.by_name["c_numeric_12_2"].duckdb_type == "DECIMAL(16,4)"


@pytest.mark.parametrize("name", [v for v in VARIANTS if "noschemas" not in v])
def test_temporal_and_special_values_with_schemas(name):
    zoo = type_zoo(name)
    first, edge, infinities = zoo[0], zoo[4], zoo[5]
    types = {c.name: c.duckdb_type for c in first.schema.columns}
    assert types["c_timestamp"] == "TIMESTAMP" and types["c_timestamp3"] == "TIMESTAMP"
    # timestamp(6) arrives in microseconds, timestamp(3) in milliseconds: the Arrow units differ
    assert str(first.schema.by_name["c_timestamp"].arrow_type) == "timestamp[us]"
    assert str(first.schema.by_name["c_timestamp3"].arrow_type) == "timestamp[ms]"
    assert first.values["c_timestamp"] == 1709214330123456
    assert first.values["c_timestamp3"] == 1709214330123
    assert edge.values["c_timestamp3"] == -1  # 1969-12-31 23:59:59.999
    assert math.isnan(edge.values["c_real"]) and edge.values["c_double"] == -math.inf
    assert infinities.values["c_double"] == math.inf
    assert first.values["c_timetz"] == "11:45:30.5+00"
    assert types["c_timestamptz"] == "TIMESTAMP WITH TIME ZONE" and types["c_timetz"] == "TIME WITH TIME ZONE"
    assert types["c_uuid"] == "UUID" and types["c_json"] == "JSON" and types["c_interval"] == "BIGINT"
    assert types["c_int_arr"] == "INTEGER[]" and types["c_text_arr"] == "VARCHAR[]"
    assert first.values["c_bytea"] == bytes.fromhex("deadbeef00ff")
    assert first.values["c_text_arr"] == ["x", "y z", None]
    assert types["c_date"] == "DATE" and first.values["c_date"] == 19782  # 2024-02-29


@pytest.mark.parametrize("name", [v for v in VARIANTS if v.startswith("string")])
def test_string_mode_keeps_decimal_text(name):
    zoo = type_zoo(name)
    assert zoo[0].values["c_numeric_12_2"] == "1234567890.12"
    assert zoo[4].values["c_numeric"] == "NAN"


@pytest.mark.parametrize("name", [v for v in VARIANTS if v.startswith("double")])
def test_double_mode_decodes_numbers(name):
    zoo = type_zoo(name)
    assert zoo[0].values["c_numeric_12_2"] == pytest.approx(1234567890.12)
    assert zoo[0].schema.by_name["c_numeric_12_2"].duckdb_type == "DOUBLE"
    assert math.isnan(zoo[4].values["c_numeric"])


@pytest.mark.parametrize("name", [v for v in ORDERED_VARIANTS if "precise-noschemas" in v])
def test_precise_without_schemas_never_guesses_a_number(name):
    zoo = type_zoo(name)
    first = zoo[0]
    assert first.schema.mode == "inferred"
    column = first.schema.by_name["c_numeric_12_2"]
    if "decimalformat-numeric" in name:
        assert first.values["c_numeric_12_2"] == pytest.approx(1234567890.12)
    else:
        # base64 of the unscaled integer; the scale is nowhere in the message: kept raw, flagged inferred
        assert first.values["c_numeric_12_2"] == "HL6ZGhQ="
        assert column.duckdb_type == "VARCHAR" and "inferred" in column.source_type
    # VariableScaleDecimal carries its scale even without a schema: exact
    assert first.values["c_numeric"] == "3.14159265358979323846264338327950288419"


def test_corpus_path_is_the_shared_one():
    assert Path(CORPUS).name == "debezium-corpus"


def test_four_partition_variant_carries_the_same_changes():
    def changes(name):
        rows = [v for v in decode_variant(name).values() if isinstance(v, ChangeRow)]
        return sorted((r.table, r.op, str(sorted(r.values.items())), tuple(r.unavailable)) for r in rows)

    four = [v for v in VARIANTS if "4partitions" in v]
    if not four:
        pytest.skip("no 4-partition variant")
    assert changes(four[0]) == changes("precise-noschemas")


@pytest.mark.parametrize("variant", VARIANTS)
def test_an_update_of_a_keyless_table_keeps_its_before_image_typed(variant):
    """audit_log has no key (REPLICA IDENTITY FULL): its update carries the old row, typed as the new one;
    no other event keeps a before image (customers is FULL too, but has a key)."""
    from ingest.core.batch import Batch
    from ingest.core.contract import BEFORE_IMAGE

    results = decode_variant(variant)
    rows = [r for r in results.values() if isinstance(r, ChangeRow)]
    with_before = [r for r in rows if r.before is not None]
    assert [(r.table, r.op) for r in with_before] == [("inventory__audit_log", "u")]
    (update,) = with_before
    assert update.before == {**update.values, "details": '{"version": 1}'}
    assert update.values["details"] == '{"version": 2}'
    batch = Batch()
    for row in rows:
        if row.table == "inventory__audit_log":
            batch.add(row)
    batch.close()
    (audit,) = batch.segments["inventory__audit_log"]
    befores = audit.arrow.column(BEFORE_IMAGE).to_pylist()
    assert [b is not None for b in befores] == [
        r.op == "u" for r in rows if r.table == "inventory__audit_log"
    ]
