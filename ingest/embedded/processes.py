"""Stopping a child or daemon process: ask it to shut down, give it time, then kill it."""

from __future__ import annotations

import contextlib
import signal
import subprocess

import psutil


def stop_process(
    process: subprocess.Popen[bytes] | subprocess.Popen[str] | psutil.Process,
    grace_s: float,
    signum: signal.Signals = signal.SIGTERM,
    kill_wait_s: float = 5.0,
) -> None:
    """Send `signum` (SIGTERM: a clean shutdown), wait up to `grace_s` for the exit, then SIGKILL and wait
    `kill_wait_s` more. A process that is already gone is not an error."""
    if isinstance(process, subprocess.Popen) and process.poll() is not None:
        return
    try:
        process.send_signal(signum)
        process.wait(grace_s)
    except (subprocess.TimeoutExpired, psutil.TimeoutExpired):
        with contextlib.suppress(ProcessLookupError, psutil.NoSuchProcess):
            process.kill()
        process.wait(kill_wait_s)
    except (ProcessLookupError, psutil.NoSuchProcess):
        pass
