"""Integration: each corpus variant through the real broker, `ingest run --until-caught-up`, the real lake."""

import datetime as dt
import math
from decimal import Decimal
from uuid import UUID

import orjson
import pytest
from confluent_kafka import Consumer, TopicPartition

from conftest import CORPUS, VARIANTS, send, with_schema
from ingest.devtools.corpus import produce, read_variant

pytestmark = [pytest.mark.integration, pytest.mark.skipif(not VARIANTS, reason="corpus not present")]

UTC = dt.UTC


def land_variant(lake, variant: str) -> list:
    records = read_variant(CORPUS / variant, topic_prefix=lake.topic_prefix)
    produce(records, lake.settings.kafka.client)
    stderr = lake.ingest("run", "--until-caught-up").stderr
    # Without schemas and without a types file, each table says once that its types are inferred.
    inferred = stderr.count("no types file lists")
    assert inferred == (0 if variant.endswith("-schemas") else 7), stderr[-3000:]
    return records


def staging_rows(lake, table: str) -> dict[tuple[int, int], dict]:
    con = lake.connect()
    try:
        cursor = con.execute(f"select * from lake.staging.{table}")
        names = [d[0] for d in cursor.description]
        return {
            (r["_kafka_partition"], r["_kafka_offset"]): r
            for r in (dict(zip(names, row, strict=True)) for row in cursor.fetchall())
        }
    finally:
        con.close()


@pytest.mark.parametrize("variant", VARIANTS)
def test_variant_lands_row_by_row(lake, variant):
    records = land_variant(lake, variant)
    data = [r for r in records if r.topic.count(".") == 2]
    for table in sorted({r.topic.split(".", 1)[1].replace(".", "__") for r in data}):
        rows = staging_rows(lake, table)
        expected = [r for r in data if r.topic.split(".", 1)[1].replace(".", "__") == table and r.value]
        assert sorted(rows) == sorted((r.partition, r.offset) for r in expected), table
        for record in expected:
            row = rows[(record.partition, record.offset)]
            payload = orjson.loads(record.value)
            payload = payload.get("payload", payload)
            assert row["_cdc_op"] == payload["op"]
            assert row["_cdc_deleted"] == (payload["op"] == "d")
            assert row["_cdc_lsn"] == payload["source"]["lsn"]
            assert row["_cdc_tx_id"] == str(payload["source"]["txId"])
            assert row["_cdc_snapshot"] == (payload["source"]["snapshot"] != "false")
            assert row["_cdc_source_ts"] == dt.datetime.fromtimestamp(payload["source"]["ts_us"] / 1e6, UTC)
            assert row["_kafka_topic"] == record.topic
            image = payload["before"] if payload["op"] == "d" else payload["after"] or {}
            unavailable = []
            for column, value in image.items():
                if value in ("__debezium_unavailable_value", "X19kZWJleml1bV91bmF2YWlsYWJsZV92YWx1ZQ=="):
                    unavailable.append(column)
                    assert row[column] is None
                elif value is None:
                    assert row[column] is None, (table, record.offset, column)
                elif isinstance(value, (str, int)) and type(value) is type(row[column]):
                    # text and integers pass through unchanged; typed values are checked in the test below
                    assert row[column] == value, (table, record.offset, column)
            assert row["_cdc_unavailable_columns"] == unavailable
    # bookkeeping: offsets stored for every partition read, nothing dead-lettered
    stored = dict(
        ((t, p), o)
        for t, p, o in lake.query(
            'select topic, "partition", max(next_offset) from lake.staging._cdc_offsets group by all'
        )
    )
    for record in records:
        assert stored[(record.topic, record.partition)] > record.offset
    assert lake.query("select count(*) from lake.staging._dead_letters") == [(0,)]
    assert lake.query("select count(*) from lake.staging._cdc_transactions") == [(54,)]
    assert lake.query("select count(*) from lake.staging._cdc_messages") == [(2,)]


def test_precise_schemas_typed_values_match_the_sql(lake):
    land_variant(lake, "precise-schemas")
    zoo = {r["id"]: r for r in staging_rows(lake, "inventory__type_zoo").values() if r["_cdc_op"] in "rc"}
    first, edge, infinities = zoo[1], zoo[3], zoo[4]
    # numeric(12,2) = 1234567890.12 exactly (the column was widened to numeric(16,4) later in the stream)
    assert first["c_numeric_12_2"] == Decimal("1234567890.12")
    assert first["c_numeric"] == "3.14159265358979323846264338327950288419"
    assert first["c_money"] == Decimal("1234.56")
    # timestamp(6) in µs and timestamp(3) in ms: both exact
    assert first["c_timestamp"] == dt.datetime(2024, 2, 29, 13, 45, 30, 123456)
    assert first["c_timestamp3"] == dt.datetime(2024, 2, 29, 13, 45, 30, 123000)
    assert edge["c_timestamp3"] == dt.datetime(1969, 12, 31, 23, 59, 59, 999000)
    assert first["c_timestamptz"] == dt.datetime(2024, 2, 29, 11, 45, 30, 123456, tzinfo=UTC)
    assert first["c_date"] == dt.date(2024, 2, 29) and edge["c_date"] == dt.date(1, 1, 1)
    assert first["c_time"] == dt.time(13, 45, 30, 123456)
    assert first["c_timetz"] == dt.time(11, 45, 30, 500000, tzinfo=dt.UTC)
    # interval in µs, Debezium counting a month as 30.4375 days (kept as exact integers: see typemap)
    assert first["c_interval"] == 37_091_106_789_000
    assert edge["c_interval"] == -86_401_000_000
    assert first["c_uuid"] == UUID("a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11")
    assert orjson.loads(first["c_jsonb"]) == {"a": 1, "b": [1, 2, {"c": None}]}
    assert first["c_bytea"] == bytes.fromhex("deadbeef00ff") and edge["c_bytea"] == b""
    assert first["c_int_arr"] == [1, 2, 3] and first["c_text_arr"] == ["x", "y z", None]
    assert first["c_char"] == "ab   " and first["c_bigint"] == 2**63 - 1 and edge["c_bigint"] == -(2**63)
    assert math.isnan(edge["c_real"]) and edge["c_double"] == -math.inf and infinities["c_double"] == math.inf
    assert edge["c_numeric"] is None  # NaN numeric: Debezium sends null in precise mode
    assert infinities["c_numeric"] == "0.000000000000000000000000000001"
    widened = next(r for r in staging_rows(lake, "inventory__type_zoo").values() if r["_kafka_offset"] == 10)
    assert widened["c_numeric_12_2"] == Decimal("123456789012.3456")
    types = dict(
        lake.query(
            "select column_name, data_type from duckdb_columns() where database_name = 'lake' "
            "and table_name = 'inventory__type_zoo'"
        )
    )
    assert types["c_numeric_12_2"] == "DECIMAL(16,4)"
    assert (
        dict(
            lake.query(
                "select column_name, data_type from duckdb_columns() where database_name = 'lake' "
                "and table_name = 'inventory__orders'"
            )
        )["quantity"]
        == "BIGINT"
    )
    changes = lake.query(
        "select table_name, change, column_name, old_type, new_type "
        "from lake.staging._cdc_schema_changes where change <> 'create' order by all"
    )
    assert changes == [
        ("inventory__customers", "add_column", "phone", None, "VARCHAR"),
        ("inventory__orders", "widen", "quantity", "INTEGER", "BIGINT"),
        ("inventory__type_zoo", "widen", "c_numeric_12_2", "DECIMAL(12,2)", "DECIMAL(16,4)"),
    ]
    tables = dict(lake.query("select table_name, primary_key from lake.staging._cdc_tables"))
    assert tables["inventory__customers"] == ["id"] and tables["inventory__products_on_hand"] == [
        "product_id"
    ]
    assert tables["inventory__audit_log"] == []
    truncate = lake.query("select count(*) from lake.staging.inventory__products_on_hand where _cdc_op = 't'")
    assert truncate == [(1,)]


def rewind_group_offsets(lake) -> None:
    """Commit offset 0 for every partition of the lake's topics under its consumer group."""
    config = {"bootstrap.servers": lake.settings.kafka.bootstrap_servers, "group.id": lake.settings.group_id}
    consumer = Consumer(config)
    try:
        topics = consumer.list_topics(timeout=10).topics
        rewound = [
            TopicPartition(name, partition, 0)
            for name, topic in topics.items()
            if name.startswith(lake.topic_prefix)
            for partition in topic.partitions
        ]
        assert rewound
        consumer.commit(offsets=rewound, asynchronous=False)
    finally:
        consumer.close()


def test_rereading_from_offset_zero_adds_nothing(lake):
    land_variant(lake, "precise-noschemas")
    before = lake.query("select count(*) from lake.staging.inventory__customers")
    # Rewind the group's offsets on the broker to 0 for every partition: positions live in the lake.
    rewind_group_offsets(lake)
    result = lake.ingest("run", "--until-caught-up")
    assert lake.query("select count(*) from lake.staging.inventory__customers") == before
    assert "0 records" in result.stderr
    # Now really re-read every partition from offset 0: each record is recognised as landed and dropped.
    result = lake.ingest("run", "--until-caught-up", "--from-beginning")
    assert lake.query("select count(*) from lake.staging.inventory__customers") == before
    assert "133 already landed" in result.stderr
    assert lake.query("select count(*) from lake.staging._cdc_transactions") == [(54,)]


def test_typed_values_survive_parquet(lake):
    """More rows than DuckLake inlines in the catalog (10), so the values really go through Parquet files."""
    fields = [
        {"type": "int32", "optional": False, "field": "id"},
        {"type": "int64", "optional": True, "name": "io.debezium.time.MicroDuration", "field": "span"},
        {"type": "string", "optional": True, "name": "io.debezium.time.Interval", "field": "iso"},
        {
            "type": "bytes",
            "optional": True,
            "name": "org.apache.kafka.connect.data.Decimal",
            "parameters": {"scale": "2", "connect.decimal.precision": "12"},
            "field": "amount",
        },
    ]
    spans = [37_091_106_789_000, -86_401_000_000, 1, -1]
    values = [
        orjson.dumps(
            with_schema(
                {
                    "before": None,
                    "op": "c",
                    "after": {
                        "id": i,
                        "span": spans[i % 4],
                        "iso": "-P1Y2M3DT4H5M6.78S",
                        "amount": "/xcrWvAB",
                    },
                    "source": {
                        "ts_ms": 1795241515000,
                        "snapshot": "false",
                        "schema": "s",
                        "table": "t",
                        "lsn": i,
                    },
                },
                fields,
            )
        )
        for i in range(40)
    ]
    send(lake, f"{lake.topic_prefix}.s.spans", values)
    lake.ingest("run", "--until-caught-up")
    rows = lake.query("select id, span, iso, amount from lake.staging.s__spans order by id")
    assert [r[1] for r in rows] == [spans[i % 4] for i in range(40)]
    assert {r[2] for r in rows} == {"-P1Y2M3DT4H5M6.78S"}
    assert {r[3] for r in rows} == {Decimal("-9999999999.99")}
    files = lake.query("select count(*) from ducklake_list_files('lake', 's__spans', schema => 'staging')")
    assert files[0][0] >= 1, "the rows must be in a Parquet file, not inlined"
