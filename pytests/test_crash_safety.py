"""Crash safety: kill -9 the ingester at random moments while events flow; nothing is lost or duplicated.

A producer thread writes numbered change events into two partitions while the real `ingest run` process is
started and SIGKILLed over and over. Afterwards staging must hold every produced record exactly once, by
(partition, offset) and by content (the id written at that position).
"""

import os
import random
import signal
import subprocess
import sys
import threading
import time

import orjson
import pytest
from confluent_kafka import Producer

from conftest import REPO
from ingest.broker import ensure_topics

pytestmark = pytest.mark.integration

KILLS = int(os.environ.get("CRASH_TEST_KILLS", "8"))
EVENTS = int(os.environ.get("CRASH_TEST_EVENTS", "30000"))


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
    client_config: dict, topic: str, count: int, delivered: dict, done: threading.Event
) -> None:
    producer = Producer({"bootstrap.servers": client_config["bootstrap.servers"], "linger.ms": 20})

    def on_delivery(error, message):
        if error is None:
            delivered[(message.partition(), message.offset())] = int(
                message.key().decode().split(":")[1][:-1]
            )

    for item_id in range(count):
        producer.produce(
            topic,
            key=b'{"id":%d}' % item_id,
            value=change_event(item_id),
            partition=item_id % 2,
            on_delivery=on_delivery,
        )
        if item_id % 500 == 0:
            producer.poll(0)
            time.sleep(0.05)  # about 10k events/s: the stream keeps flowing across the kills
    producer.flush(60)
    done.set()


def test_kill_minus_nine_loses_and_duplicates_nothing(lake):
    topic = f"{lake.topic_prefix}.inventory.items"
    ensure_topics({"bootstrap.servers": lake.settings.kafka.bootstrap_servers}, [topic], partitions=2)
    delivered: dict[tuple[int, int], int] = {}
    done = threading.Event()
    producer = threading.Thread(
        target=produce_numbered,
        args=(lake.settings.kafka.client, topic, EVENTS, delivered, done),
        daemon=True,
    )
    producer.start()
    rng = random.Random(int(os.environ.get("CRASH_TEST_SEED", "7")))
    env = {**lake.env, "INGEST_BATCH__MAX_EVENTS": "2000", "INGEST_BATCH__MAX_MS": "100"}
    for _ in range(KILLS):
        process = subprocess.Popen(
            [sys.executable, "-m", "ingest.cli", "run"],
            env=env,
            cwd=REPO,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        time.sleep(
            rng.uniform(1.0, 3.5)
        )  # start-up takes ~1 s: kills land in start-up, between and in commits
        process.send_signal(signal.SIGKILL)
        process.wait()
    producer.join(120)
    assert done.is_set() and len(delivered) == EVENTS
    landed_while_killing = lake.query("select count(*) from lake.staging.inventory__items")[0][0]
    assert landed_while_killing > 0, "no ingester lived long enough to land anything"
    lake.ingest("run", "--until-caught-up", timeout=300)

    rows = lake.query("select _kafka_partition, _kafka_offset, id from lake.staging.inventory__items")
    landed = {(p, o): i for p, o, i in rows}
    assert len(rows) == len(landed), "a record landed twice"
    assert landed == delivered, "staging differs from what was produced"
    batches = lake.query("select count(distinct _batch_id) from lake.staging.inventory__items")[0][0]
    assert batches > KILLS, "the kills did not interrupt a stream of batches"
