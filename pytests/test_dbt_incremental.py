"""Incremental builds over a staging table that keeps growing: what one build applied, the next one continues,
whatever the Kafka positions of the new events."""

import pytest

from conftest import CORPUS, VARIANTS, dbt
from ingest.corpus import produce, read_variant

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
        "select * replace (quantity + 1 as quantity, _cdc_lsn + 1000000 as _cdc_lsn, 'u' as _cdc_op, "
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
