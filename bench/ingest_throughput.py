"""Ingest throughput: events/s landed in staging, divided by the raw consume rate of the same messages.

Both are measured in the same run, from the same embedded broker, so the ratio survives a noisy machine.
The raw rate is confluent-kafka `assign()` + `consume(10000)` until partition EOF, doing nothing with the
messages: the ceiling for a Python consumer. The landed rate is the real ingester (decode, type, batch,
commit to DuckLake with offsets) reading the same topic into a fresh lake. ~1 KB Debezium envelopes,
schemas off and on. Prints a table and writes bench/results/ingest_throughput.json.

    .venv/bin/python bench/ingest_throughput.py [--events 200000] [--runs 3]
"""

from __future__ import annotations

import argparse
import socket
import statistics
import sys
import tempfile
import time
import uuid
from pathlib import Path

import orjson
from confluent_kafka import OFFSET_BEGINNING, Consumer, KafkaError, Producer, TopicPartition

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from common import write_result  # noqa: E402

from ingest.broker import EmbeddedBroker, ensure_topics  # noqa: E402
from ingest.catalog import EmbeddedCatalog  # noqa: E402
from ingest.config import load_settings  # noqa: E402
from ingest.consumer import Ingester  # noqa: E402
from ingest.lake import connect  # noqa: E402
from ingest.logs import configure_logging  # noqa: E402
from ingest.sink import LakeSink  # noqa: E402

CORPUS_CUSTOMERS = REPO.parent / "shared/debezium-corpus/precise-schemas/dbserver1.inventory.customers.jsonl"


def envelope(i: int, schemas: bool) -> tuple[bytes, bytes]:
    """A ~1 KB customers change event (payload ~670 B, like the corpus's), optionally with its schema."""
    payload = {
        "before": None,
        "after": {
            "id": i,
            "first_name": f"First{i}",
            "last_name": f"Last{i}",
            "email": f"customer{i}@example.com",
            "notes": "n" * 420,
        },
        "source": {
            "version": "3.6.3.Final",
            "connector": "postgresql",
            "name": "bench",
            "ts_ms": 1795241515869,
            "snapshot": "false",
            "db": "inventory",
            "sequence": '["54348544","54348816"]',
            "ts_us": 1795241515869290,
            "ts_ns": 1795241515869290000,
            "schema": "inventory",
            "table": "customers",
            "txId": 1003 + i,
            "lsn": 54348816 + i,
            "xmin": None,
            "origin": None,
            "origin_lsn": None,
        },
        "transaction": None,
        "op": "c",
        "ts_ms": 1795241515900,
        "ts_us": 1795241515900123,
        "ts_ns": 1795241515900123000,
    }
    key = {"id": i}
    if not schemas:
        return orjson.dumps(key), orjson.dumps(payload)
    sample = orjson.loads(CORPUS_CUSTOMERS.read_text().splitlines()[0])
    value_schema = sample["value"]["schema"]
    for part in ("before", "after"):
        struct = next(f for f in value_schema["fields"] if f["field"] == part)
        if not any(f["field"] == "notes" for f in struct["fields"]):
            struct["fields"].append({"type": "string", "optional": True, "field": "notes"})
    return (
        orjson.dumps({"schema": sample["key"]["schema"], "payload": key}),
        orjson.dumps({"schema": value_schema, "payload": payload}),
    )


def produce(bootstrap: str, topic: str, events: int, schemas: bool) -> float:
    ensure_topics({"bootstrap.servers": bootstrap}, [topic], partitions=1)
    producer = Producer({"bootstrap.servers": bootstrap, "linger.ms": 20, "batch.size": 1_000_000})
    size = 0
    for i in range(events):
        key, value = envelope(i, schemas)
        size += len(value)
        while True:
            try:
                producer.produce(topic, key=key, value=value)
                break
            except BufferError:
                producer.poll(0.05)
        if i % 10_000 == 0:
            producer.poll(0)
    producer.flush(120)
    return size / events


def raw_consume_rate(bootstrap: str, topic: str, events: int) -> float:
    consumer = Consumer(
        {
            "bootstrap.servers": bootstrap,
            "group.id": f"raw-{uuid.uuid4().hex}",
            "enable.partition.eof": True,
            "enable.auto.commit": False,
        }
    )
    consumer.assign([TopicPartition(topic, 0, OFFSET_BEGINNING)])
    seen, started = 0, None
    while True:
        batch = consumer.consume(10_000, timeout=1.0)
        if started is None and batch:
            started = time.perf_counter()
        eof = False
        for message in batch:
            if message.error():
                eof = eof or message.error().code() == KafkaError._PARTITION_EOF
            else:
                seen += 1
        if eof and seen >= events:
            break
    elapsed = time.perf_counter() - started
    consumer.close()
    return seen / elapsed


def landed_rate(settings_env: dict[str, str], topic: str, events: int) -> float:
    settings = load_settings("dev", project_dir=REPO, environ={**settings_env, "INGEST_TOPICS": f"^{topic}$"})
    sink = LakeSink(lambda: connect(settings))
    sink.open()  # attach and create bookkeeping tables outside the timed part
    started = time.perf_counter()
    stats = Ingester(settings, sink).run(until_caught_up=True)
    elapsed = time.perf_counter() - started
    sink.close()
    assert stats.change_rows == events, stats
    return events / elapsed


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--events", type=int, default=200_000)
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()
    configure_logging("text", level=30)
    state = Path(tempfile.mkdtemp(prefix="cdc-bench-", dir="/tmp"))
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    broker = EmbeddedBroker(state, port)
    broker.start()
    catalog = EmbeddedCatalog(state)
    catalog.start()
    results: dict[str, dict] = {}
    try:
        for schemas in (False, True):
            mode = "schemas on" if schemas else "schemas off"
            ratios, raw_rates, landed_rates = [], [], []
            for run in range(args.runs):
                topic = f"bench{run}{uuid.uuid4().hex[:6]}.inventory.customers"
                size = produce(broker.bootstrap_servers, topic, args.events, schemas)
                raw = raw_consume_rate(broker.bootstrap_servers, topic, args.events)
                env = {
                    "INGEST_KAFKA__EMBEDDED": "false",
                    "INGEST_KAFKA__BOOTSTRAP_SERVERS": broker.bootstrap_servers,
                    "INGEST_LAKE__STATE_DIR": str(state),
                    "INGEST_LAKE__CATALOG_DATABASE": f"bench_{uuid.uuid4().hex[:8]}",
                    "INGEST_LAKE__DATA_PATH": str(state / f"data-{topic}"),
                }
                landed = landed_rate(env, topic, args.events)
                raw_rates.append(raw)
                landed_rates.append(landed)
                ratios.append(landed / raw)
                print(
                    f"{mode} run {run + 1}: {size:.0f} B/event, raw {raw:,.0f}/s, landed {landed:,.0f}/s, "
                    f"ratio {landed / raw:.3f}",
                    flush=True,
                )
            results[mode] = {
                "value_bytes": round(size),
                "raw_consume_per_s": {
                    "median": statistics.median(raw_rates),
                    "min": min(raw_rates),
                    "max": max(raw_rates),
                },
                "landed_per_s": {
                    "median": statistics.median(landed_rates),
                    "min": min(landed_rates),
                    "max": max(landed_rates),
                },
                "ratio": {
                    "median": statistics.median(ratios),
                    "min": min(ratios),
                    "max": max(ratios),
                    "runs": ratios,
                },
            }
    finally:
        broker.stop()
        catalog.stop()
    write_result(
        "ingest_throughput",
        f"python bench/ingest_throughput.py --events {args.events} --runs {args.runs}",
        results,
        events=args.events,
        runs=args.runs,
        goal="landed / raw >= 0.5",
    )
    print()
    print(
        "| mode | value size | raw consume (events/s) | landed (events/s) | landed / raw (median, min-max) |"
    )
    print("|---|---|---|---|---|")
    for mode, r in results.items():
        print(
            f"| {mode} | {r['value_bytes']} B | {r['raw_consume_per_s']['median']:,.0f} | "
            f"{r['landed_per_s']['median']:,.0f} | {r['ratio']['median']:.3f} "
            f"({r['ratio']['min']:.3f}-{r['ratio']['max']:.3f}) |"
        )


if __name__ == "__main__":
    main()
