"""Shared fixtures: one real embedded broker and one real embedded catalog per test session.

Each test that lands data gets a lake of its own (its own catalog database and data directory) and topics
of its own (a unique prefix), so tests never see each other's rows.
"""

from __future__ import annotations

import itertools
import os
import shutil
import socket
import subprocess
import sys
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import orjson
import pytest
from confluent_kafka import Producer

from ingest.broker import EmbeddedBroker, ensure_topics
from ingest.catalog import EmbeddedCatalog
from ingest.config import IngestSettings, load_settings

REPO = Path(__file__).resolve().parent.parent
CORPUS = REPO.parent / "shared" / "debezium-corpus"
VARIANTS = (
    sorted(p.name for p in CORPUS.iterdir() if p.is_dir() and any(p.glob("*.jsonl")))
    if CORPUS.exists()
    else []
)
_lake_numbers = itertools.count(1)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="session")
def state_dir() -> Iterator[Path]:
    # Short path: the catalog's Unix socket lives here and socket paths are limited to ~100 bytes.
    path = Path(f"/tmp/cdc-test-{os.getpid()}")
    path.mkdir(exist_ok=True)
    yield path
    shutil.rmtree(path, ignore_errors=True)  # after the catalog and broker fixtures have stopped


@pytest.fixture(scope="session")
def catalog(state_dir: Path) -> Iterator[EmbeddedCatalog]:
    catalog = EmbeddedCatalog(state_dir)
    catalog.start()
    yield catalog
    catalog.stop()


@pytest.fixture(scope="session")
def broker(state_dir: Path) -> Iterator[EmbeddedBroker]:
    broker = EmbeddedBroker(state_dir, free_port())
    broker.start()
    yield broker
    broker.stop()


@dataclass
class Lake:
    """A lake of one's own inside the session's catalog, and the settings/env that reach it."""

    settings: IngestSettings
    env: dict[str, str]
    topic_prefix: str

    def connect(self):
        from ingest.lake import connect

        return connect(self.settings)

    def query(self, sql: str) -> list[tuple]:
        con = self.connect()
        try:
            return con.execute(sql).fetchall()
        finally:
            con.close()

    def ingest(
        self, *args: str, timeout: float = 180, check: bool = True
    ) -> subprocess.CompletedProcess[str]:
        """Run the real `ingest` command line against this lake."""
        result = subprocess.run(
            [sys.executable, "-m", "ingest.cli", *args],
            env=self.env,
            cwd=REPO,
            capture_output=True,
            text=True,
            timeout=timeout,
        )
        if check and result.returncode != 0:
            raise AssertionError(
                f"ingest {' '.join(args)} exited {result.returncode}:\n{result.stderr[-4000:]}"
            )
        return result


@pytest.fixture
def lake(state_dir: Path, catalog: EmbeddedCatalog, broker: EmbeddedBroker, tmp_path: Path) -> Lake:
    number = next(_lake_numbers)
    prefix = f"t{uuid.uuid4().hex[:8]}"
    env_overrides = {
        "INGEST_TARGET": "dev",
        "INGEST_TOPICS": rf"^{prefix}\.",
        "INGEST_GROUP_ID": f"{prefix}-group",
        "INGEST_KAFKA__EMBEDDED": "false",
        "INGEST_KAFKA__BOOTSTRAP_SERVERS": broker.bootstrap_servers,
        "INGEST_LAKE__STATE_DIR": str(state_dir),
        "INGEST_LAKE__CATALOG_DATABASE": f"lake_{os.getpid()}_{number}",
        "INGEST_LAKE__DATA_PATH": str(tmp_path / "data"),
        "INGEST_BATCH__MAX_MS": "200",
        # Any free port: test ingesters never collide with each other or with a dev ingester on 9464.
        "INGEST_METRICS_PORT": "0",
    }
    env = {k: v for k, v in os.environ.items() if not k.startswith("INGEST_")}
    env.update(env_overrides)
    settings = load_settings("dev", project_dir=REPO, environ=env)
    return Lake(settings, env, prefix)


def dbt(lake, tmp_path: Path, *args: str, project_dir: Path = REPO) -> subprocess.CompletedProcess[str]:
    """Run the real `dbt` of this venv against `lake`, with target and log paths under `tmp_path`."""
    command = [
        str(Path(sys.executable).parent / "dbt"),
        *args,
        "--target-path",
        str(tmp_path / "target"),
        "--log-path",
        str(tmp_path / "logs"),
    ]
    return subprocess.run(command, env=lake.env, cwd=project_dir, capture_output=True, text=True, timeout=900)


def produce_items(lake, topic: str, start: int, count: int) -> None:
    producer = Producer({"bootstrap.servers": lake.settings.kafka.bootstrap_servers, "linger.ms": 5})
    for i in range(start, start + count):
        value = {
            "before": None,
            "after": {"id": i},
            "op": "c",
            "source": {
                "ts_ms": 1795241515000,
                "snapshot": "false",
                "schema": "s",
                "table": "items",
                "lsn": i,
            },
        }
        producer.produce(topic, key=b'{"id":%d}' % i, value=orjson.dumps(value))
    assert producer.flush(30) == 0


def with_schema(payload: dict, fields: list[dict]) -> dict:
    row = {"type": "struct", "optional": True, "fields": fields, "name": "t.inventory.x.Value"}
    source = {
        "type": "struct",
        "optional": False,
        "name": "io.debezium.connector.postgresql.Source",
        "field": "source",
        "fields": [{"type": "int64", "optional": True, "field": "lsn"}],
    }
    schema = {
        "type": "struct",
        "optional": False,
        "name": "t.inventory.x.Envelope",
        "fields": [
            {**row, "field": "before"},
            {**row, "field": "after"},
            source,
            {"type": "string", "optional": False, "field": "op"},
        ],
    }
    return {"schema": schema, "payload": payload}


def send(lake, topic: str, values: list[bytes | None], keys: list[bytes | None] | None = None) -> None:
    ensure_topics({"bootstrap.servers": lake.settings.kafka.bootstrap_servers}, [topic], partitions=1)
    producer = Producer({"bootstrap.servers": lake.settings.kafka.bootstrap_servers})
    for i, value in enumerate(values):
        producer.produce(topic, value=value, key=(keys or [b'{"id":%d}' % i] * len(values))[i])
    assert producer.flush(30) == 0
