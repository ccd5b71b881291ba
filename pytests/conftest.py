"""Shared fixtures: one real embedded broker and one real embedded catalog per test session.

Each test that lands data gets a lake of its own (its own catalog database and data directory) and topics
of its own (a unique prefix), so tests never see each other's rows.
"""

from __future__ import annotations

import contextlib
import itertools
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson
import pytest
from confluent_kafka import Producer

from ingest.core.config import IngestSettings, load_settings
from ingest.core.decode import ChangeRow, DeadLetter, Decoder, RawRecord, TransactionRecord, to_record
from ingest.embedded.broker import EmbeddedBroker, ensure_topics
from ingest.embedded.catalog import EmbeddedCatalog

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
    _queries: Any = field(default=None, repr=False)

    def connect(self):
        """A new connection of the caller's own, with the lake attached."""
        from ingest.embedded.catalog import connect_lake

        return connect_lake(self.settings)

    def query(self, sql: str) -> list[tuple]:
        """Run one statement in a transaction of its own (so it sees the lake's latest snapshot, whoever
        committed it) on a connection kept for the test's queries: opening one costs ~0.5 s (extensions, the
        attach), and tests run hundreds of queries. A connection that saw an error is closed, never reused
        (the next query opens a new one: after a catalog restart too)."""
        if self._queries is None:
            self._queries = self.connect()
        try:
            return self._queries.execute(sql).fetchall()
        except BaseException:
            self.close()
            raise

    def close(self) -> None:
        if self._queries is not None:
            con, self._queries = self._queries, None
            with contextlib.suppress(Exception):
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
def lake(state_dir: Path, catalog: EmbeddedCatalog, broker: EmbeddedBroker, tmp_path: Path) -> Iterator[Lake]:
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
        # The dev broker answers a group join after session.timeout.ms/2 (../shared/research/tansu.md): 1 s
        # joins instead of 3 s for every ingester a test starts. Kafka itself would refuse < 6000.
        "INGEST_KAFKA__SESSION_TIMEOUT_MS": "1000",
        "INGEST_KAFKA__HEARTBEAT_INTERVAL_MS": "250",
        # Any free port: test ingesters never collide with each other or with a dev ingester on 9464.
        "INGEST_METRICS_PORT": "0",
    }
    env = {k: v for k, v in os.environ.items() if not k.startswith("INGEST_")}
    env.update(env_overrides)
    settings = load_settings("dev", project_dir=REPO, environ=env)
    lake = Lake(settings, env, prefix)
    yield lake
    lake.close()


_parsed_projects: dict[Path, Path] = {}


def seed_dbt_target(lake, target_path: Path) -> Path:
    """Put the session's parse of the project (dbt's `partial_parse.msgpack`) into a fresh dbt target path.

    Every test's dbt runs in a target path of its own, and dbt parses the whole project from scratch into
    an empty one (3-7 s per run, some 45 runs a session). With the saved parse dbt checks every project file,
    the profile, vars and env vars against it and parses again only what changed (here: nothing), so the
    models, tests and results are the same. The parse is made once per session, the first time it is asked
    for, by a real `dbt parse` that must pass. Returns `target_path`."""
    saved = _parsed_projects.get(lake.settings.state_dir)
    if saved is None:
        parse_dir = lake.settings.state_dir / "dbt-parsed"
        result = subprocess.run(
            [
                str(Path(sys.executable).parent / "dbt"),
                "parse",
                "--target-path",
                str(parse_dir / "target"),
                "--log-path",
                str(parse_dir / "logs"),
            ],
            env=lake.env,
            cwd=REPO,
            capture_output=True,
            text=True,
            timeout=900,
        )
        assert result.returncode == 0, f"dbt parse failed:\n{result.stdout[-6000:]}"
        saved = _parsed_projects[lake.settings.state_dir] = parse_dir / "target" / "partial_parse.msgpack"
    target_path.mkdir(parents=True, exist_ok=True)
    if not (target_path / saved.name).exists():
        shutil.copy(saved, target_path / saved.name)
    return target_path


def dbt(lake, tmp_path: Path, *args: str, project_dir: Path = REPO) -> subprocess.CompletedProcess[str]:
    """Run the real `dbt` of this venv against `lake`, with target and log paths under `tmp_path` (the
    project's parse comes from the session's, `seed_dbt_target`)."""
    if project_dir == REPO:
        seed_dbt_target(lake, tmp_path / "target")
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


# ------------------------------------------------------------------------------ fault-injection helpers
def ingest_command(*args: str) -> list[str]:
    return [sys.executable, "-m", "ingest.cli", *args]


def start_ingest(lake, *args: str, env: dict[str, str] | None = None, log_file=None) -> subprocess.Popen:
    """Start `ingest <args>` against the lake in the background (stderr to `log_file`, else discarded)."""
    return subprocess.Popen(
        ingest_command(*args),
        env={**lake.env, **(env or {})},
        cwd=REPO,
        stdout=subprocess.DEVNULL,
        stderr=log_file if log_file is not None else subprocess.DEVNULL,
    )


def warm_up(lake) -> None:
    """One run before the topics exist creates the lake's bookkeeping (on a loaded machine that alone can
    outlast every kill interval, so no killed run would ever get past start-up)."""
    assert start_ingest(lake, "run", "--until-caught-up").wait(300) == 0, "the warm-up run failed"


def kill_ingester_repeatedly(
    lake, kills: int, rng, env: dict[str, str] | None = None, alive_s: tuple[float, float] = (1.0, 3.5)
) -> list[tuple[float, float]]:
    """Start `ingest run` and SIGKILL it, `kills` times: every other process after a random time (kills in
    start-up and in the group join), the others a random moment after their first batch committed (kills
    while a batch is gathered and inside commits, however slow start-up is under load). Returns each
    process's lifetime (epoch seconds from start to kill). Call `warm_up` first."""
    lifetimes = []
    for life in range(kills):
        started = time.time()
        batches = batches_committed(lake)
        process = start_ingest(lake, "run", env=env)
        if life % 2:
            wait_for(
                lambda b=batches: batches_committed(lake) > b, 120, "a batch of the process", None, process
            )
            time.sleep(rng.uniform(0, alive_s[1] - alive_s[0]))
        else:
            time.sleep(rng.uniform(*alive_s))
        process.send_signal(signal.SIGKILL)
        process.wait()
        lifetimes.append((started, time.time()))
    return lifetimes


def batches_committed(lake) -> int:
    try:
        return lake.query("select count(*) from lake.staging._cdc_batches")[0][0]
    except Exception:  # no batch log before the first ingester opened the lake
        return 0


def processes_that_landed(lake, lifetimes: list[tuple[float, float]]) -> int:
    """How many of the killed processes committed at least one batch while they lived (batch commit times
    against each lifetime): more than one means a kill interrupted a stream another process resumed."""
    committed = [row[0] for row in lake.query("select epoch(committed_at) from lake.staging._cdc_batches")]
    return sum(any(start <= at <= end for at in committed) for start, end in lifetimes)


def wait_for(
    condition,
    timeout_s: float,
    what: str,
    log_path: Path | None = None,
    process: subprocess.Popen | None = None,
) -> None:
    """Poll `condition`; fail naming `what` on timeout or as soon as `process` exits, with the tail of its log
    if given."""
    deadline = time.monotonic() + timeout_s
    while not condition():
        exited = process is not None and process.poll() is not None
        if exited or time.monotonic() >= deadline:
            tail = log_path.read_text()[-6000:] if log_path is not None else ""
            why = f"the process exited ({process.returncode})" if exited else "timed out"
            pytest.fail(f"{why} waiting for {what}" + (f"; its log ends:\n{tail}" if tail else ""))
        time.sleep(0.3)


def start_generator(lake, events: int, rate: float, *args: str, log_file=None) -> subprocess.Popen:
    """`ingest generate` into the lake's topics (prefix = the lake's topic prefix), in the background."""
    command = ingest_command(
        "generate",
        "--events",
        str(events),
        "--rate",
        str(rate),
        "--topic-prefix",
        lake.topic_prefix,
        *args,
    )
    return subprocess.Popen(
        command,
        env=lake.env,
        cwd=REPO,
        stdout=subprocess.PIPE,
        stderr=log_file if log_file is not None else subprocess.DEVNULL,
        text=True,
    )


def read_topics(lake, pattern: str | None = None) -> list[RawRecord]:
    """Every record the broker holds in the lake's topics, read from offset 0 to each partition's end."""
    from confluent_kafka import OFFSET_BEGINNING, Consumer, KafkaError, TopicPartition

    regex = re.compile(pattern or lake.settings.topics)
    consumer = Consumer(
        {
            "bootstrap.servers": lake.settings.kafka.bootstrap_servers,
            "group.id": f"{lake.topic_prefix}-reader",
            "enable.auto.commit": False,
            "enable.partition.eof": True,
        }
    )
    try:
        metadata = consumer.list_topics(timeout=10)
        partitions = [
            TopicPartition(topic, p, OFFSET_BEGINNING)
            for topic, meta in metadata.topics.items()
            if regex.search(topic)
            for p in meta.partitions
        ]
        consumer.assign(partitions)
        pending = {(tp.topic, tp.partition) for tp in partitions}
        records: list[RawRecord] = []
        deadline = time.monotonic() + 300
        while pending and time.monotonic() < deadline:
            for message in consumer.consume(10_000, timeout=1):
                error = message.error()
                if error is not None:
                    assert error.code() == KafkaError._PARTITION_EOF, error.str()
                    pending.discard((message.topic(), message.partition()))
                    continue
                records.append(to_record(message))
        assert not pending, f"partitions not read to their end: {pending}"
        return records
    finally:
        consumer.close()


def _key_values(key: bytes | None) -> tuple:
    document = orjson.loads(key) if key else {}
    if isinstance(document, dict) and set(document) == {"schema", "payload"}:
        document = document["payload"]
    return tuple(sorted(document.items()))


def assert_staging_exactly_once(lake, records: list[RawRecord]) -> dict[str, int]:
    """Staging holds every record exactly once, by (topic, partition, offset) and by content.

    What each record should have become is derived from the record itself (the pure decoder): change events
    are staging rows (compared by op, LSN, transaction id and primary key values), transaction events are
    `_cdc_transactions` rows, tombstones nothing, and nothing is a dead letter. Returns counts per table."""
    decoder = Decoder()
    expected: dict[str, dict[tuple[str, int, int], tuple]] = {}
    expected_tx: dict[tuple[str, int, int], tuple] = {}
    key_columns: dict[str, list[str]] = {}
    for record in records:
        decoded = decoder.decode(record)
        position = (record.topic, record.partition, record.offset)
        assert not isinstance(decoded, DeadLetter), f"{position}: {decoded.error}"
        if isinstance(decoded, ChangeRow):
            keys = _key_values(record.key)
            if keys:  # a TRUNCATE has no key: its row holds NULL in the key columns
                key_columns.setdefault(decoded.table, [k for k, _ in keys])
            expected.setdefault(decoded.table, {})[position] = (decoded.op, decoded.lsn, decoded.tx_id, keys)
        elif isinstance(decoded, TransactionRecord):
            expected_tx[position] = (decoded.event.status, decoded.event.tx_id)
    counts: dict[str, int] = {}
    for table, want in expected.items():
        names = key_columns.get(table, [])
        columns = ", ".join(f'"{n}"' for n in names)
        rows = lake.query(
            f"select _kafka_topic, _kafka_partition, _kafka_offset, _cdc_op, _cdc_lsn, _cdc_tx_id, {columns} "
            f'from lake.staging."{table}"'
        )
        landed: dict[tuple[str, int, int], tuple] = {}
        for topic, partition, offset, op, lsn, tx_id, *key in rows:
            position = (topic, partition, offset)
            assert position not in landed, f"staging.{table}: {position} landed twice"
            # a delete's key comes from its before image; its row holds the key columns too.
            # A TRUNCATE has no key (its row's key columns are null).
            keys = () if op == "t" else tuple(sorted(zip(names, key, strict=True)))
            landed[position] = (op, lsn, tx_id, keys)
        missing = sorted(set(want) - set(landed))[:5]
        unexpected = sorted(set(landed) - set(want))[:5]
        assert not missing and not unexpected, f"staging.{table}: missing {missing}, unexpected {unexpected}"
        wrong = [(p, landed[p], want[p]) for p in want if landed[p] != want[p]][:5]
        assert not wrong, f"staging.{table}: content differs (position, landed, produced): {wrong}"
        counts[table] = len(rows)
    if expected_tx:
        rows = lake.query(
            "select _kafka_topic, _kafka_partition, _kafka_offset, status, tx_id "
            "from lake.staging._cdc_transactions"
        )
        landed_tx = {(t, p, o): (s, x) for t, p, o, s, x in rows}
        assert len(rows) == len(landed_tx), "a transaction event landed twice"
        assert landed_tx == expected_tx, "staging._cdc_transactions differs from what was produced"
        counts["_cdc_transactions"] = len(rows)
    dead = lake.query("select count(*) from lake.staging._dead_letters")[0][0]
    assert dead == 0, f"{dead} produced records became dead letters"
    return counts


@pytest.fixture
def own_broker(lake: Lake, state_dir: Path) -> Iterator[tuple[EmbeddedBroker, str]]:
    """A broker of the test's own (restarting the session's would disturb other tests), the lake pointed at
    it, with one topic `<prefix>.s.items` of 50 records, not landed yet; (broker, topic). Stopped after."""
    broker = EmbeddedBroker(state_dir, free_port())
    broker.start()
    try:
        lake.settings.kafka.client["bootstrap.servers"] = broker.bootstrap_servers
        lake.env["INGEST_KAFKA__BOOTSTRAP_SERVERS"] = broker.bootstrap_servers
        topic = f"{lake.topic_prefix}.s.items"
        ensure_topics({"bootstrap.servers": broker.bootstrap_servers}, [topic], partitions=1)
        produce_items(lake, topic, 0, 50)
        yield broker, topic
    finally:
        broker.stop()
