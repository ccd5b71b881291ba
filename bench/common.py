"""Shared parts of the benchmarks: an embedded broker + catalog for one bench invocation, ~1 KB Debezium
events, lake settings per measured run, statistics and result files.

Every benchmark measures a ratio against a baseline taken in the same run (the machines are noisy) and
reports the median of its runs with min and max. Results go to bench/results/<name>.json; bench/report.py
renders them into docs/benchmarks.md.
"""

from __future__ import annotations

import json
import os
import platform
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import orjson
import psutil
from confluent_kafka import OFFSET_BEGINNING, Consumer, KafkaError, Message, Producer, TopicPartition
from confluent_kafka.admin import AdminClient

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from ingest.embedded.broker import EmbeddedBroker, ensure_topics  # noqa: E402
from ingest.embedded.catalog import EmbeddedCatalog  # noqa: E402

RESULTS = REPO / "bench" / "results"
BIN = Path(sys.executable).parent
CORPUS_CUSTOMERS = REPO.parent / "shared/debezium-corpus/precise-schemas/dbserver1.inventory.customers.jsonl"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@dataclass
class BenchEnv:
    """One broker and one catalog server for a whole bench invocation; a fresh lake per `lake_env()`."""

    state: Path
    broker: EmbeddedBroker
    catalog: EmbeddedCatalog

    @property
    def bootstrap(self) -> str:
        return self.broker.bootstrap_servers

    def lake_env(self, topics: str, name: str | None = None, **extra: str) -> dict[str, str]:
        """Environment for the ingester / dbt: a lake (catalog database + data dir) of its own."""
        name = name or f"bench_{uuid.uuid4().hex[:8]}"
        base = {k: v for k, v in os.environ.items() if not k.startswith("INGEST_")}
        return {
            **base,
            "INGEST_TARGET": "dev",
            "INGEST_TOPICS": topics,
            "INGEST_GROUP_ID": f"{name}-group",
            "INGEST_KAFKA__EMBEDDED": "false",
            "INGEST_KAFKA__BOOTSTRAP_SERVERS": self.bootstrap,
            "INGEST_LAKE__STATE_DIR": str(self.state),
            "INGEST_LAKE__CATALOG_DATABASE": name,
            "INGEST_LAKE__DATA_PATH": str(self.state / f"data-{name}"),
            **extra,
        }


@contextmanager
def bench_env() -> Iterator[BenchEnv]:
    state = Path(tempfile.mkdtemp(prefix="cdc-bench-", dir="/tmp"))
    broker = EmbeddedBroker(state, free_port())
    catalog = EmbeddedCatalog(state)
    broker.start()
    try:
        catalog.start()
        try:
            yield BenchEnv(state, broker, catalog)
        finally:
            catalog.stop()
    finally:
        broker.stop()
        shutil.rmtree(state, ignore_errors=True)


def customer_payload(i: int, key: int, op: str = "c", notes: int = 420, lsn: int | None = None) -> dict:
    """A customers change event payload (~1 KB with the default notes), like the corpus's."""
    image = {
        "id": key,
        "first_name": f"First{i}",
        "last_name": f"Last{i}",
        "email": f"customer{i}@example.com",
    }
    if notes:
        image["notes"] = "n" * notes
    lsn = 54348816 + i if lsn is None else lsn
    return {
        "before": image if op == "d" else None,
        "after": None if op == "d" else image,
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
            "lsn": lsn,
            "xmin": None,
            "origin": None,
            "origin_lsn": None,
        },
        "transaction": None,
        "op": op,
        "ts_ms": 1795241515900,
        "ts_us": 1795241515900123,
        "ts_ns": 1795241515900123000,
    }


def customer_schemas(notes: bool = True) -> tuple[dict, dict]:
    """(key schema, value schema) of the corpus's customers topic, with the bench's `notes` column."""
    sample = orjson.loads(CORPUS_CUSTOMERS.read_text().splitlines()[0])
    value_schema = sample["value"]["schema"]
    if notes:
        for part in ("before", "after"):
            struct = next(f for f in value_schema["fields"] if f["field"] == part)
            if not any(f["field"] == "notes" for f in struct["fields"]):
                struct["fields"].append({"type": "string", "optional": True, "field": "notes"})
    return sample["key"]["schema"], value_schema


def encode(payload: dict, key: int, schemas: tuple[dict, dict] | None) -> tuple[bytes, bytes]:
    if schemas is None:
        return orjson.dumps({"id": key}), orjson.dumps(payload)
    return (
        orjson.dumps({"schema": schemas[0], "payload": {"id": key}}),
        orjson.dumps({"schema": schemas[1], "payload": payload}),
    )


def producer(bootstrap: str, **config: object) -> Producer:
    return Producer({"bootstrap.servers": bootstrap, "linger.ms": 20, "batch.size": 1_000_000, **config})


def produce_all(bootstrap: str, topic: str, records: Iterator[tuple[bytes, bytes]]) -> tuple[int, int]:
    """Produce every (key, value) to a one-partition topic; returns (count, value bytes)."""
    ensure_topics({"bootstrap.servers": bootstrap}, [topic], partitions=1)
    p = producer(bootstrap)
    count = size = 0
    for key, value in records:
        size += len(value)
        while True:
            try:
                p.produce(topic, key=key, value=value)
                break
            except BufferError:
                p.poll(0.05)
        count += 1
        if count % 10_000 == 0:
            p.poll(0)
    p.flush(300)
    return count, size


def delete_topic(bootstrap: str, topic: str) -> None:
    """Free a run's topic once nothing reads it: the embedded broker keeps every topic in memory."""
    admin = AdminClient({"bootstrap.servers": bootstrap})  # kept alive until the deletion is answered
    admin.delete_topics([topic])[topic].result(60)


@dataclass
class Page:
    messages: list[Message]  # the records of one `consume(10000)`, errors left out
    eof: bool  # the partition's end was reached
    arrived: float  # time.perf_counter() when consume() returned


def consume_pages(bootstrap: str, topic: str, group_prefix: str) -> Iterator[Page]:
    """A bare confluent-kafka reader of a one-partition topic from the beginning (`assign()`, no group
    offsets): a Page per `consume(10000)`, for as long as the caller iterates. The consumer is closed when
    the generator is closed."""
    consumer = Consumer(
        {
            "bootstrap.servers": bootstrap,
            "group.id": f"{group_prefix}-{uuid.uuid4().hex}",
            "enable.partition.eof": True,
            "enable.auto.commit": False,
        }
    )
    consumer.assign([TopicPartition(topic, 0, OFFSET_BEGINNING)])
    try:
        while True:
            batch = consumer.consume(10_000, timeout=1.0)
            page = Page([], False, time.perf_counter())
            for message in batch:
                if message.error():
                    page.eof = page.eof or message.error().code() == KafkaError._PARTITION_EOF
                else:
                    page.messages.append(message)
            yield page
    finally:
        consumer.close()


def spread(values: list[float]) -> dict[str, float]:
    return {"median": statistics.median(values), "min": min(values), "max": max(values), "runs": values}


def machine() -> dict[str, object]:
    load = os.getloadavg()
    return {
        "cpus": os.cpu_count(),
        "memory_gib": round(psutil.virtual_memory().total / 2**30, 1),
        "python": platform.python_version(),
        "platform": platform.platform(),
        "load_average_at_end": [round(x, 1) for x in load],
        "date": datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC"),
    }


def write_result(name: str, command: str, results: dict, **extra: object) -> Path:
    """Write bench/results/<name>.json. BENCH_NOTE (environment) is kept as the run's note, e.g. what else
    ran on the machine meanwhile; bench/report.py prints it under the figures."""
    note = os.environ.get("BENCH_NOTE")
    report = {"benchmark": name, "command": command, "machine": machine(), **extra, "results": results}
    if note:
        report["note"] = note
    RESULTS.mkdir(parents=True, exist_ok=True)
    out = RESULTS / f"{name}.json"
    out.write_text(json.dumps(report, indent=2, default=str) + "\n")
    print(f"wrote {out.relative_to(REPO)}", flush=True)
    return out


def ingest_until_caught_up(env: dict[str, str], *extra: str) -> float:
    """Run the real CLI (`ingest run --until-caught-up`) as a child process; returns wall seconds."""
    started = time.perf_counter()
    subprocess.run(
        [str(BIN / "ingest"), "run", "--until-caught-up", *extra],
        env=env,
        cwd=REPO,
        check=True,
        stdout=subprocess.DEVNULL,
    )
    return time.perf_counter() - started


def dbt(env: dict[str, str], work: Path, *args: str) -> float:
    """Run `dbt <args>` (target dev, the bench's lake); returns wall seconds. Fails loudly."""
    started = time.perf_counter()
    result = subprocess.run(
        [str(BIN / "dbt"), *args, "--target-path", str(work / "target"), "--log-path", str(work / "logs")],
        env=env,
        cwd=REPO,
        capture_output=True,
        text=True,
    )
    if result.returncode != 0:
        raise RuntimeError(f"dbt {' '.join(args)} failed:\n{result.stdout[-4000:]}\n{result.stderr[-2000:]}")
    return time.perf_counter() - started
