"""Incremental builds over a staging table that keeps growing: what one build applied, the next one continues,
whatever the Kafka positions of the new events."""

import pytest

from conftest import CORPUS, VARIANTS, dbt
from ingest.devtools.corpus import produce, read_variant

pytestmark = [pytest.mark.integration, pytest.mark.skipif(not VARIANTS, reason="corpus not present")]

HISTORY = "inventory__products_on_hand__history"


def land_corpus(lake) -> None:
    produce(
        read_variant(CORPUS / "precise-schemas", topic_prefix=lake.topic_prefix), lake.settings.kafka.client
    )
    lake.ingest("run", "--until-caught-up")


def test_a_new_event_reusing_an_applied_kafka_position_is_a_new_version(lake, tmp_path):
    """A broker replaced between builds (the demo's in-memory Tansu, a recreated topic) starts its offsets
    at 0 again: the next event of a key can carry the Kafka partition and offset of a version already in
    the history. It must add a version, not overwrite that one (the history's MERGE key used to be the key
    and the Kafka position only: the continued demo failed cdc_history_is_consistent)."""
    land_corpus(lake)
    first = dbt(lake, tmp_path, "build", "--select", HISTORY)
    assert first.returncode == 0, first.stdout[-4000:]
    (product, partition, offset), *_ = lake.query(
        f"select product_id, _cdc_kafka_partition, _cdc_kafka_offset from lake.curated.{HISTORY} "
        "where _is_current and not _is_deleted order by _cdc_lsn, _cdc_kafka_offset"
    )
    versions = lake.query(f"select count(*) from lake.curated.{HISTORY} where product_id = {product}")[0][0]
    # the next change of that product, landed in a new batch at the Kafka position of an applied version
    lake.query(
        "insert into lake.staging.inventory__products_on_hand "
        "select * replace (quantity + 1 as quantity, _cdc_lsn + 1000000 as _cdc_lsn, "
        "[_cdc_lsn + 1000000] as _cdc_position, 'u' as _cdc_op, "
        "_cdc_source_ts + interval 1 hour as _cdc_source_ts, "
        "(select max(_batch_id) + 1 from lake.staging.inventory__products_on_hand) as _batch_id) "
        f"from lake.staging.inventory__products_on_hand where product_id = {product} "
        f"and _kafka_partition = {partition} and _kafka_offset = {offset}"
    )

    second = dbt(lake, tmp_path, "build", "--select", HISTORY)
    assert second.returncode == 0, second.stdout[-4000:]
    rows = lake.query(
        f"select _cdc_kafka_offset, _is_current from lake.curated.{HISTORY} where product_id = {product} "
        "order by _cdc_lsn"
    )
    assert len(rows) == versions + 1
    assert rows[-2:] == [(offset, False), (offset, True)]


def land_change(lake, table: str, key: str, key_value: int, change: str, batch: int) -> None:
    """The next change of one key, landed in staging batch `batch` (a copy of its latest event, later)."""
    lake.query(
        f"insert into lake.staging.{table} "
        f"select * replace ({change}, _cdc_lsn + 1000000 as _cdc_lsn, [_cdc_lsn + 1000000] as _cdc_position, "
        "'u' as _cdc_op, "
        f"_cdc_source_ts + interval 1 hour as _cdc_source_ts, {batch} as _batch_id, "
        "_kafka_offset + 1000000 as _kafka_offset) "
        f"from lake.staging.{table} where {key} = {key_value} "
        "order by _cdc_lsn desc, _kafka_offset desc limit 1"
    )


def test_the_marts_keep_one_watermark_per_input(lake, tmp_path):
    """The order and product history models read staging at different moments of one build (the ingester
    lands in between), so the product history can be ahead of the order history. Forced here with partial
    builds: an order change lands in batch B+1, a product change in B+2; the product history and the marts
    are built, the order history is not; then a whole build. With one watermark (greatest of order and
    product batches) the orders mart jumped to B+2 and never took the order of B+1 (docs/reliability.md,
    "Concurrency"); daily_sales and customer_lifetime_value, reading the orders mart, had the same flaw."""
    land_corpus(lake)
    first = dbt(lake, tmp_path, "build")
    assert first.returncode == 0, first.stdout[-4000:]
    (batch,) = lake.query("select max(_batch_id) from lake.staging.inventory__orders")[0]
    (order_id, product_id), *_ = lake.query(
        "select order_id, product_id from lake.serving.orders where status = 'open' order by order_id"
    )
    land_change(lake, "inventory__orders", "id", order_id, "quantity + 5 as quantity", batch + 1)
    land_change(lake, "inventory__products", "id", product_id, "weight + 1 as weight", batch + 2)

    ahead = dbt(lake, tmp_path, "run", "--select", "inventory__products__history", "orders+")
    assert ahead.returncode == 0, ahead.stdout[-4000:]
    second = dbt(lake, tmp_path, "build")
    assert second.returncode == 0, second.stdout[-6000:]
    (quantity,) = lake.query(f"select quantity from lake.serving.orders where order_id = {order_id}")[0]
    (expected,) = lake.query(f"select quantity from lake.curated.inventory__orders where id = {order_id}")[0]
    assert quantity == expected
