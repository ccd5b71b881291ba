"""`ingest replay`: staging rebuilt from Kafka into fresh tables, switched atomically while a live ingester
keeps running; nothing lost, nothing doubled (by topic, partition and offset)."""

import subprocess
import sys
import threading
import time

import orjson
import pytest
from confluent_kafka import Producer

from conftest import REPO, produce_items
from ingest.embedded.broker import ensure_topics

pytestmark = pytest.mark.integration


def item_event(item_id: int) -> bytes:
    return orjson.dumps(
        {
            "before": None,
            "after": {"id": item_id, "name": f"item-{item_id}"},
            "op": "c",
            "source": {"ts_ms": 1795241515000, "schema": "s", "table": "items", "lsn": item_id},
        }
    )


def produce(lake, topic: str, ids: range, delivered: dict, timestamp_ms: int | None = None, pace: float = 0):
    producer = Producer({"bootstrap.servers": lake.settings.kafka.bootstrap_servers, "linger.ms": 5})

    def on_delivery(error, message):
        assert error is None, error
        delivered[(message.topic(), message.partition(), message.offset())] = int(
            message.key().decode().split(":")[1][:-1]
        )

    for i in ids:
        extra = {"timestamp": timestamp_ms} if timestamp_ms is not None else {}
        producer.produce(
            topic,
            key=b'{"id":%d}' % i,
            value=item_event(i),
            partition=i % 2,
            on_delivery=on_delivery,
            **extra,
        )
        if pace and i % 50 == 0:
            producer.poll(0)
            time.sleep(pace)
    assert producer.flush(30) == 0


def landed(lake, table: str) -> dict:
    rows = lake.query(f"select _kafka_topic, _kafka_partition, _kafka_offset, id from lake.staging.{table}")
    positions = {(t, p, o): i for t, p, o, i in rows}
    assert len(positions) == len(rows), "a record landed twice"
    return positions


def wait_for(predicate, timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.5)


def test_replay_from_earliest_switches_atomically_under_a_live_ingester(lake):
    topic = f"{lake.topic_prefix}.s.items"
    ensure_topics({"bootstrap.servers": lake.settings.kafka.bootstrap_servers}, [topic], partitions=2)
    delivered: dict = {}
    produce(lake, topic, range(0, 3000), delivered)
    lake.ingest("run", "--until-caught-up")
    before = lake.query(
        "select _kafka_partition, _kafka_offset, id, name, _cdc_op, _cdc_lsn, _ingested_at "
        "from lake.staging.s__items"
    )
    assert len(before) == 3000
    first_landing = max(row[-1] for row in before)
    batch_before = lake.query("select max(batch_id) from lake.staging._cdc_offsets")[0][0]

    live = subprocess.Popen(
        [sys.executable, "-m", "ingest.cli", "run"],
        env=lake.env,
        cwd=REPO,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    stop = threading.Event()

    def keep_producing():
        start = 3000
        while not stop.is_set():  # through the catch-up, the pause, the switch and after it
            produce(lake, topic, range(start, start + 50), delivered)
            start += 50
            time.sleep(0.1)

    producing = threading.Thread(target=keep_producing)
    try:
        producing.start()
        result = lake.ingest("replay", "--from", "earliest", timeout=300)
        time.sleep(3)
        stop.set()
        producing.join(120)
        total = len(delivered)
        wait_for(lambda: lake.query("select count(*) from lake.staging.s__items")[0][0] >= total)
        time.sleep(2)  # anything doubled would show up within a couple of batches
    finally:
        stop.set()
        live.terminate()
        live_log = live.communicate(timeout=60)[1]
    assert "switched 1 tables (s__items)" in result.stdout, result.stdout + result.stderr
    assert landed(lake, "s__items") == delivered
    assert "resumed on staging generation 'replay-" in live_log, live_log[-3000:]
    assert live.returncode == 0, live_log[-3000:]

    after = lake.query(
        "select _kafka_partition, _kafka_offset, id, name, _cdc_op, _cdc_lsn, _ingested_at "
        "from lake.staging.s__items where _kafka_offset < 1500"
    )
    assert sorted(r[:-1] for r in after) == sorted(r[:-1] for r in before), "replay differs from the original"
    assert all(r[-1] > first_landing for r in after), "rows were not re-landed by the replay"
    tables = {
        t for (t,) in lake.query("select table_name from duckdb_tables() where schema_name = 'staging'")
    }
    assert not [t for t in tables if t.startswith("_replay_")], tables
    generation = lake.query(
        "select comment from duckdb_tables() where schema_name = 'staging' and table_name = '_cdc_offsets'"
    )[0][0]
    assert generation.startswith("replay-") and "paused" not in generation
    # batch ids go on above the ones dbt has seen: the live ingester's batches after the switch are newer
    newest = lake.query("select max(_batch_id) from lake.staging.s__items where _kafka_offset >= 2500")[0][0]
    assert newest > batch_before
    # a later restart resumes from the replayed positions: nothing more to land
    lake.ingest("run", "--until-caught-up")
    assert landed(lake, "s__items") == delivered


def test_replay_from_a_timestamp_keeps_newer_records_and_other_topics(lake):
    items = f"{lake.topic_prefix}.s.items"
    other = f"{lake.topic_prefix}.s.other"
    ensure_topics({"bootstrap.servers": lake.settings.kafka.bootstrap_servers}, [items, other], partitions=2)
    old, new, kept = {}, {}, {}
    produce(lake, items, range(0, 100), old, timestamp_ms=1_700_000_000_000)  # 2023-11-14
    produce(lake, items, range(100, 150), new, timestamp_ms=1_800_000_000_000)  # 2027-01-15
    produce(lake, other, range(0, 40), kept)
    lake.ingest("run", "--until-caught-up")
    assert len(landed(lake, "s__items")) == 150
    other_before = lake.query("select _kafka_offset, _ingested_at from lake.staging.s__other order by 1")

    result = lake.ingest(
        "replay", "--from", "2025-01-01T00:00:00Z", "--topics", rf"^{lake.topic_prefix}\.s\.items$"
    )
    assert "100 older than --from skipped" in result.stdout, result.stdout
    assert landed(lake, "s__items") == new
    # the topic not replayed is untouched, and its positions and table entry were carried over
    assert (
        lake.query("select _kafka_offset, _ingested_at from lake.staging.s__other order by 1") == other_before
    )
    assert lake.query("select count(*) from lake.staging._cdc_tables") == [(2,)]
    positions = dict(
        (p[:2], p[2])
        for p in lake.query(
            'select topic, "partition", max(next_offset) from lake.staging._cdc_offsets group by all'
        )
    )
    assert positions == {
        (items, 0): 75,
        (items, 1): 75,
        (other, 0): 20,
        (other, 1): 20,
    }
    lake.ingest("run", "--until-caught-up")  # resumes after the skipped records: nothing comes back
    assert landed(lake, "s__items") == new
    assert len(landed(lake, "s__other")) == 40


def test_replay_refuses_a_bad_timestamp(lake):
    result = lake.ingest("replay", "--from", "yesterday", check=False)
    assert result.returncode == 2 and "ISO-8601" in result.stderr


def test_replay_is_the_way_forward_after_the_broker_lost_its_data(lake, own_broker):
    broker, topic = own_broker
    lake.ingest("run", "--until-caught-up")

    broker.stop()  # memory storage: every topic and record is gone
    broker.start()
    ensure_topics({"bootstrap.servers": broker.bootstrap_servers}, [topic], partitions=1)
    produce_items(lake, topic, 0, 20)  # the source re-produced (a new snapshot): offsets 0..19
    stopped = lake.ingest("run", "--until-caught-up", check=False)
    assert stopped.returncode == 2 and "ingest replay --from earliest" in stopped.stderr

    lake.ingest("replay", "--from", "earliest")
    assert lake.query("select count(*), max(_kafka_offset) from lake.staging.s__items") == [(20, 19)]
    produce_items(lake, topic, 20, 5)
    lake.ingest("run", "--until-caught-up")  # runs again, from the replayed positions
    rows = lake.query("select _kafka_offset, id from lake.staging.s__items order by 1")
    assert rows == [(i, i) for i in range(25)]
