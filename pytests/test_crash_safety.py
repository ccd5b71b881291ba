"""Crash safety: kill -9 the ingester at random moments while events flow; nothing is lost or duplicated.

A producer thread writes numbered change events into two partitions while the real `ingest run` process is
started and SIGKILLed over and over. Afterwards staging must hold every produced record exactly once, by
(partition, offset) and by content (the id written at that position). The soak version (`make soak`) does
the same with 50 kills while `ingest generate` produces the whole inventory domain.
"""

import os
import random
import signal
import threading
import time

import orjson
import pytest
from confluent_kafka import Producer

from conftest import (
    assert_staging_exactly_once,
    kill_ingester_repeatedly,
    processes_that_landed,
    produce_items,
    read_topics,
    start_generator,
    warm_up,
)
from ingest.embedded.broker import ensure_topics

pytestmark = pytest.mark.integration

KILLS = int(os.environ.get("CRASH_TEST_KILLS", "8"))
FAST_BATCHES = {"INGEST_BATCH__MAX_EVENTS": "2000", "INGEST_BATCH__MAX_MS": "100"}


def change_event(item_id: int) -> bytes:
    return orjson.dumps(
        {
            "before": None,
            "after": {"id": item_id, "name": f"item-{item_id}", "padding": "x" * 200},
            "source": {
                "version": "3.6.3.Final",
                "connector": "postgresql",
                "name": "test",
                "ts_ms": 1795241515000,
                "ts_us": 1795241515000000 + item_id,
                "snapshot": "false",
                "db": "inventory",
                "schema": "inventory",
                "table": "items",
                "txId": 5000 + item_id,
                "lsn": 10_000 + item_id,
            },
            "transaction": None,
            "op": "c",
            "ts_ms": 1795241516000,
        }
    )


def produce_numbered(
    client_config: dict, topic: str, stop: threading.Event, delivered: dict, done: threading.Event
) -> None:
    """Numbered events at about 830/s until `stop` is set: the stream flows across every kill, however
    long the lives take under load."""
    producer = Producer({"bootstrap.servers": client_config["bootstrap.servers"], "linger.ms": 20})

    def on_delivery(error, message):
        if error is None:
            delivered[(message.partition(), message.offset())] = int(
                message.key().decode().split(":")[1][:-1]
            )

    item_id = 0
    while not stop.is_set():
        producer.produce(
            topic,
            key=b'{"id":%d}' % item_id,
            value=change_event(item_id),
            partition=item_id % 2,
            on_delivery=on_delivery,
        )
        if item_id % 500 == 0:
            producer.poll(0)
            time.sleep(0.6)
        item_id += 1
    producer.flush(60)
    done.set()


def test_kill_minus_nine_loses_and_duplicates_nothing(lake):
    topic = f"{lake.topic_prefix}.inventory.items"
    warm_up(lake)
    ensure_topics({"bootstrap.servers": lake.settings.kafka.bootstrap_servers}, [topic], partitions=2)
    delivered: dict[tuple[int, int], int] = {}
    stop, done = threading.Event(), threading.Event()
    producer = threading.Thread(
        target=produce_numbered,
        args=(lake.settings.kafka.client, topic, stop, delivered, done),
        daemon=True,
    )
    producer.start()
    rng = random.Random(int(os.environ.get("CRASH_TEST_SEED", "7")))
    # lives of 2-7 s, or 0-5 s after the first batch: start-up includes joining the consumer group (about
    # 1 s here), and a killed member holds its partitions until its session times out (1 s)
    lifetimes = kill_ingester_repeatedly(lake, KILLS, rng, env=FAST_BATCHES, alive_s=(2.0, 7.0))
    stop.set()
    producer.join(120)
    assert done.is_set() and len(delivered) > 10_000
    landed_while_killing = lake.query("select count(*) from lake.staging.inventory__items")[0][0]
    assert landed_while_killing > 0, "no ingester lived long enough to land anything"
    lake.ingest("run", "--until-caught-up", timeout=300)

    rows = lake.query("select _kafka_partition, _kafka_offset, id from lake.staging.inventory__items")
    landed = {(p, o): i for p, o, i in rows}
    assert len(rows) == len(landed), "a record landed twice"
    assert landed == delivered, "staging differs from what was produced"
    assert_staging_exactly_once(lake, read_topics(lake))
    # every other process is killed after it landed: kills interrupted a stream that later processes resumed
    assert processes_that_landed(lake, lifetimes) >= KILLS // 2, (
        "the kills did not interrupt a stream of batches"
    )


@pytest.mark.soak
@pytest.mark.timeout(3600)
def test_fifty_kills_while_the_generator_produces(lake):
    """The issue's crash test: `ingest generate` streams the inventory domain (snapshot, transactions,
    deletes with tombstones, PK changes, a column added mid-stream) while `ingest run`
    is SIGKILLed 50 times."""
    kills = int(os.environ.get("SOAK_KILLS", "50"))
    rate = float(os.environ.get("SOAK_KILL_RATE", "250"))
    warm_up(lake)
    # open-ended: it produces until the last kill, then Ctrl-C makes it flush and stop
    generator = start_generator(lake, 10_000_000, rate, "--partitions", "2", "--seed", "11")
    rng = random.Random(int(os.environ.get("CRASH_TEST_SEED", "7")))
    started = time.monotonic()
    # start-up to the first batch takes 2-6 s here: kills land in start-up, in gathering and in commits
    kill_ingester_repeatedly(lake, kills, rng, env=FAST_BATCHES, alive_s=(1.5, 6.0))
    killing_s = time.monotonic() - started
    still_producing = generator.poll() is None
    generator.send_signal(signal.SIGINT)
    output, _ = generator.communicate(timeout=600)
    assert generator.returncode == 0, output
    landed_while_killing = lake.query("select count(*) from lake.staging._cdc_offsets")[0][0]
    assert landed_while_killing > kills / 2, "too few batches landed between the kills"
    lake.ingest("run", "--until-caught-up", timeout=600)
    records = read_topics(lake)
    counts = assert_staging_exactly_once(lake, records)
    print(
        f"{kills} kills in {killing_s:.0f} s (generator still producing at the last kill: "
        f"{still_producing}); "
        f"{len(records)} records produced; landed exactly once: {counts}; "
        f"batches committed: {landed_while_killing} offset rows while killing"
    )
    assert still_producing, "the generator stopped before the kills did"


def test_the_exactly_once_check_catches_a_duplicate_a_gap_and_changed_content(lake):
    topic = f"{lake.topic_prefix}.s.items"
    produce_items(lake, topic, 0, 20)
    lake.ingest("run", "--until-caught-up")
    records = read_topics(lake)
    assert assert_staging_exactly_once(lake, records) == {"s__items": 20}
    con = lake.connect()
    try:
        con.execute("insert into lake.staging.s__items select * from lake.staging.s__items where id = 3")
        with pytest.raises(AssertionError, match="landed twice"):
            assert_staging_exactly_once(lake, records)
        con.execute("delete from lake.staging.s__items where id = 3")
        with pytest.raises(AssertionError, match="missing"):
            assert_staging_exactly_once(lake, records)
        con.execute("update lake.staging.s__items set id = 99 where id = 4")
        with pytest.raises(AssertionError, match="content differs"):
            assert_staging_exactly_once(lake, [r for r in records if r.key != b'{"id":3}'])
    finally:
        con.close()
