"""Replays a recorded Debezium corpus (`<variant>/<topic>.jsonl`) into Kafka, byte for byte as Connect would.

Records go out in the connector's global emission order when the variant has `_emission_order.tsv`, to the
partition they were recorded in, with their keys, values and headers serialized as compact JSON exactly like
Kafka Connect's JsonConverter writes them.
"""

from __future__ import annotations

import csv
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import orjson
from confluent_kafka import Producer

from ingest.embedded.broker import ensure_topics


@dataclass(frozen=True)
class CorpusRecord:
    topic: str
    partition: int
    offset: int
    key: bytes | None
    value: bytes | None
    headers: list[tuple[str, bytes]]


def _encode(document: object) -> bytes | None:
    return None if document is None else orjson.dumps(document)


def read_variant(variant_dir: Path, topic_prefix: str | None = None) -> list[CorpusRecord]:
    """All records of a variant, in emission order; `topic_prefix` renames the first topic segment."""
    by_position: dict[tuple[str, int, int], CorpusRecord] = {}
    file_order: list[tuple[str, int, int]] = []
    for path in sorted(variant_dir.glob("*.jsonl")):
        for line in path.read_text().splitlines():
            raw = orjson.loads(line)
            topic = raw["topic"]
            if topic_prefix:
                topic = topic_prefix + "." + topic.split(".", 1)[1]
            record = CorpusRecord(
                topic=topic,
                partition=raw["partition"],
                offset=raw["offset"],
                key=_encode(raw["key"]),
                value=_encode(raw["value"]),
                headers=[(k, v.encode()) for k, v in raw["headers"].items()],
            )
            position = (raw["topic"], raw["offset"], raw["partition"])
            by_position[position] = record
            file_order.append(position)
    order_file = variant_dir / "_emission_order.tsv"
    if not order_file.exists():
        return [by_position[key] for key in file_order]
    ordered = []
    with order_file.open() as handle:
        for row in csv.DictReader(handle, delimiter="\t"):
            ordered.append(by_position[(row["topic"], int(row["offset"]), int(row["partition"]))])
    return ordered


def topic_partitions(records: list[CorpusRecord]) -> dict[str, int]:
    counts: dict[str, int] = {}
    for record in records:
        counts[record.topic] = max(counts.get(record.topic, 1), record.partition + 1)
    return counts


def produce(records: list[CorpusRecord], client_config: dict[str, str]) -> int:
    """Pre-create the topics with the recorded partition counts, produce every record, return the count."""
    partitions = topic_partitions(records)
    for count in sorted(set(partitions.values())):
        ensure_topics(producer_config(client_config), [t for t, n in partitions.items() if n == count], count)
    producer = Producer({**producer_config(client_config), "linger.ms": 5})
    for record in records:
        producer.produce(
            record.topic,
            value=record.value,
            key=record.key,
            partition=record.partition,
            headers=record.headers,
        )
        producer.poll(0)
    remaining = producer.flush(30)
    if remaining:
        raise RuntimeError(f"{remaining} corpus records were not delivered")
    return len(records)


_CONSUMER_ONLY = (
    "session.timeout.ms",
    "heartbeat.interval.ms",
    "fetch.wait.max.ms",
    "group.id",
    "auto.offset.reset",
    "enable.partition.eof",
    "enable.auto.commit",
    "isolation.level",
)


def producer_config(client_config: dict[str, str]) -> dict[str, str]:
    return {k: v for k, v in client_config.items() if k not in _CONSUMER_ONLY}


def iter_variants(corpus_dir: Path) -> Iterator[Path]:
    for path in sorted(corpus_dir.iterdir()):
        if path.is_dir() and any(path.glob("*.jsonl")):
            yield path
