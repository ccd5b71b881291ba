"""Continuous mode: `ingest run --dbt-build-every 30s [--select ...]` keeps serving fresh without a scheduler.

A background thread starts an incremental `dbt build` (a subprocess, so ingestion never waits for it) every
interval, measured from the start of the previous build (the first one interval after start). It never
starts a build while its previous one runs (a build that takes longer than the interval is followed by the
next one at once), and dbt's own run lock (ingest/dbt_plugin.py) makes a build wait for one an analyst
started by hand on the same target. A build is skipped when nothing landed since the previous one started.
Each build's result is logged and recorded by the plugin in `staging._cdc_dbt_builds` (`ingest status`).
"""

from __future__ import annotations

import logging
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from ingest.core.config import IngestSettings
from ingest.core.metrics import IngestMetrics
from ingest.ops.dbt_plugin import TRIGGER_ENV, read_run_results, summarize_results
from ingest.ops.leases import LakeLease
from ingest.ops.maintain import parse_duration

log = logging.getLogger(__name__)

STOP_GRACE_S = 60.0


def parse_interval(text: str) -> float:
    """`30s`, `5m`, `1h` or a bare number of seconds (the syntax of `--maintain-every`), as seconds > 0."""
    seconds = parse_duration(text).total_seconds()
    if seconds <= 0:
        raise ValueError(f"not a positive interval: {text!r} (use e.g. 30s, 5m, 1h)")
    return seconds


@dataclass
class BuildResult:
    number: int
    status: str  # success | error
    seconds: float
    returncode: int
    counts: dict[str, int]
    message: str | None


class ContinuousBuilds:
    """Runs `dbt build` every `interval` seconds in a background thread, one at a time."""

    def __init__(
        self,
        settings: IngestSettings,
        interval: float,
        select: Sequence[str] = (),
        metrics: IngestMetrics | None = None,
        dbt_executable: str | None = None,
        lease: LakeLease | None = None,
    ) -> None:
        self.settings = settings
        # With several ingesters on one lake, only the member holding this lease builds.
        self.lease = lease
        self._built_lake_batch = -1
        self.interval = interval
        self.select = list(select)
        self.metrics = metrics
        self.dbt = dbt_executable or str(Path(sys.executable).parent / "dbt")
        # Its own target path: builds of the runner never rewrite an analyst's target/ mid-run.
        self.target_path = settings.state_dir / f"dbt-runner-{settings.target}" / "target"
        self.log_path = self.target_path.parent / "logs"
        self.results: list[BuildResult] = []
        self._landed = threading.Event()
        self._landed.set()  # build once after start: what landed before this run may not be built yet
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._process: subprocess.Popen[str] | None = None

    def command(self) -> list[str]:
        command = [self.dbt, "build", "--target", self.settings.target]
        if self.select:
            command += ["--select", *self.select]
        return [*command, "--target-path", str(self.target_path), "--log-path", str(self.log_path)]

    def notify_landed(self) -> None:
        """A batch landed: the next build has something to do."""
        self._landed.set()

    def start(self) -> None:
        self._thread = threading.Thread(target=self._loop, name="dbt-builds", daemon=True)
        self._thread.start()
        selection = f" (--select {' '.join(self.select)})" if self.select else ""
        log.info("continuous dbt builds every %.0f s%s", self.interval, selection)

    def stop(self, grace: float = STOP_GRACE_S) -> None:
        """Stop scheduling; let a running build finish for `grace` seconds, then interrupt it."""
        self._stop.set()
        if self._thread is None:
            return
        self._thread.join(timeout=grace)
        process = self._process
        if self._thread.is_alive() and process is not None:
            log.warning("dbt build still running after %.0f s: interrupting it", grace)
            process.send_signal(signal.SIGINT)  # dbt cancels its queries and exits
            self._thread.join(timeout=30)
            if self._thread.is_alive():
                process.kill()
                self._thread.join(timeout=10)
        if self.lease is not None:  # another member takes the builds over at once
            self.lease.release()

    def _loop(self) -> None:
        # The first build one interval after start: by then the ingester has landed its backlog, so the
        # build does not race it.
        next_start = time.monotonic() + self.interval
        while not self._stop.wait(max(0.0, next_start - time.monotonic())):
            next_start = time.monotonic() + self.interval
            if self.lease is not None:
                try:
                    taken = self.lease.take()
                except Exception:  # a bug in asking must not end the builds of every member quietly
                    log.exception("could not ask for the dbt builds' lease; asking again next time")
                    taken = False
                if not taken:
                    self._landed.clear()  # the member building sees it in the lake
                    continue
                if self.lease.lake_batch_id != self._built_lake_batch:
                    self._landed.set()  # another member landed something
                self._built_lake_batch = self.lease.lake_batch_id
            if not self._landed.is_set():
                log.debug("dbt build skipped: nothing landed since the previous one")
                continue
            self._landed.clear()
            try:
                self.run_once()
            except Exception:  # a failing build must not stop ingestion; the next one tries again
                log.exception("dbt build could not be started")

    def run_once(self) -> BuildResult:
        number = len(self.results) + 1
        env = {**os.environ, TRIGGER_ENV: "continuous", "DBT_TARGET": self.settings.target}
        # The runner owns its target path and runs one build at a time: whatever run_results.json is there
        # after the build is this build's.
        (self.target_path / "run_results.json").unlink(missing_ok=True)
        started = time.monotonic()
        self._process = subprocess.Popen(
            self.command(),
            cwd=self.settings.project_dir,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            start_new_session=True,  # a Ctrl-C of the ingester does not hit dbt mid-model
        )
        output, _ = self._process.communicate()
        returncode = self._process.returncode
        self._process = None
        seconds = time.monotonic() - started
        summary = summarize_results(read_run_results(self.target_path))
        status = "success" if returncode == 0 and summary["status"] == "success" else "error"
        result = BuildResult(number, status, seconds, returncode, summary["counts"], summary["message"])
        self.results.append(result)
        counted = ", ".join(f"{n} {k}" for k, n in sorted(result.counts.items())) or "no nodes run"
        if status == "success":
            log.info(
                "dbt build #%d succeeded in %.1f s (%s)", number, seconds, counted, extra={"build": number}
            )
        else:
            tail = "\n".join(output.strip().splitlines()[-15:])
            log.error(
                "dbt build #%d failed (exit %d) in %.1f s (%s): %s\n%s",
                number,
                returncode,
                seconds,
                counted,
                result.message or "",
                tail,
                extra={"build": number},
            )
        if self.metrics is not None:
            self.metrics.observe_dbt_build(status, seconds)
        return result
