"""SQL decoding inside the real consumer loop: a consume() call's chunks decode in a thread of their own
while the loop reads the next records, and join the batch before anything read after them. Whatever the
batch size, every record lands exactly once, a batch holds at most `batch.max_events` records, positions
only move forward from batch to batch, and plain chunks really go through SQL."""

import pytest
from confluent_kafka import Producer
from test_bulk_decode import generated

from conftest import REPO, assert_staging_exactly_once, read_topics
from ingest.core.batch import Batch
from ingest.core.config import load_settings
from ingest.core.consumer import Ingester
from ingest.core.ownership import Member
from ingest.core.sink import LakeSink
from ingest.embedded.broker import ensure_topics
from ingest.embedded.catalog import connect_lake

pytestmark = pytest.mark.integration

EVENTS = 12_000
MAX_EVENTS = 2_500  # not a multiple of consume()'s chunk: reads in flight straddle batches


def test_chunks_in_flight_land_once_in_order_within_the_batch_size(lake):
    topic = f"{lake.topic_prefix}.inventory.customers"
    ensure_topics({"bootstrap.servers": lake.settings.kafka.bootstrap_servers}, [topic], partitions=1)
    producer = Producer({"bootstrap.servers": lake.settings.kafka.bootstrap_servers, "linger.ms": 5})
    for i, message in enumerate(generated(EVENTS, schemas=False, transactions=True)):
        producer.produce(topic, key=message.key(), value=message.value())
        if i % 997 == 0:  # a tombstone now and then: decoded in Python between SQL chunks
            producer.produce(topic, key=message.key(), value=None)
    assert producer.flush(30) == 0

    batches = {"INGEST_BATCH__MAX_EVENTS": str(MAX_EVENTS), "INGEST_BATCH__MAX_MS": "60000"}
    settings = load_settings("dev", project_dir=REPO, environ={**lake.env, **batches})
    sink = LakeSink.for_lake(
        lambda: connect_lake(settings), settings.lake, member=Member.this_process(settings.group_id)
    )
    landed: list[tuple[int, int, int]] = []  # (records, next offset, chunks decoded in SQL) per batch

    def on_batch(batch: Batch, _elapsed: float) -> None:
        in_sql = sum(1 for segments in batch.segments.values() for s in segments if s.decoder == "sql")
        landed.append((batch.size, batch.next_offsets[(topic, 0)], in_sql))

    stats = Ingester(settings, sink, on_batch=on_batch).run(until_caught_up=True)
    sink.close()

    records = read_topics(lake)
    assert stats.records == len(records) == sum(size for size, _, _ in landed)
    assert all(size <= MAX_EVENTS for size, _, _ in landed), landed
    next_offsets = [offset for _, offset, _ in landed]
    assert next_offsets == sorted(set(next_offsets)) and next_offsets[-1] == len(records)
    assert sum(in_sql for _, _, in_sql in landed) > 0, "no chunk was decoded in SQL"
    assert_staging_exactly_once(lake, records)
