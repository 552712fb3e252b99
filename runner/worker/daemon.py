"""``tuneq daemon start|stop|status``: the worker detached into its own session, with its pid/lock file
(``worker.pid``) and log (``worker.log``) in the state directory, so it outlives the SSH session."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from runner.core.paths import state_dir
from runner.worker.pidfile import PidLock

LOG_FILE = "worker.log"


@dataclass(frozen=True)
class DaemonStatus:
    """Whether the state directory's worker runs, its pid and its log."""

    pid: int | None
    log: Path

    @property
    def running(self) -> bool:
        """A worker holds the lock."""
        return self.pid is not None


def status() -> DaemonStatus:
    """The state directory's worker, if one runs."""
    return DaemonStatus(PidLock(state_dir()).holder(), state_dir() / LOG_FILE)


def start(timeout_s: float = 10.0) -> tuple[DaemonStatus, bool]:
    """Start a detached worker unless one runs; return its status and whether this call started it.

    Raises :class:`RuntimeError` with the log's tail if the new worker exits at once.
    """
    current = status()
    if current.running:
        return current, False
    with current.log.open("ab") as log:
        proc = subprocess.Popen(
            [sys.executable, "-m", "runner.worker"],
            cwd=state_dir(),
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        now = status()
        if now.pid == proc.pid:
            return now, True
        if proc.poll() is not None:
            if now.running:  # another start won the race
                return now, False
            raise RuntimeError(f"the worker exited at once (code {proc.returncode}):\n{_tail(current.log)}")
        time.sleep(0.05)
    raise RuntimeError(f"the worker did not take its lock within {timeout_s:g}s; see {current.log}")


def stop(timeout_s: float = 60.0) -> DaemonStatus:
    """SIGTERM the worker and wait until it has stopped (it interrupts its running job first)."""
    current = status()
    if current.pid is None:
        return current
    os.kill(current.pid, signal.SIGTERM)
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline and status().running:
        time.sleep(0.1)
    return status()


def _tail(path: Path, lines: int = 20) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return ""
