"""Is a worker alive? One rule for the worker's sweep, ``tuneq submit``'s warning, ``tuneq daemon status``
and the TUI's banner."""

from __future__ import annotations

import os
import socket
from collections.abc import Iterable
from pathlib import Path
from typing import Protocol, TypeVar

LEASE_S = 60.0  # a running job's lease: a worker on another host silent for longer counts as gone


class SeenWorker(Protocol):
    """What the rule reads of a worker's row (:class:`runner.store.WorkerInfo`)."""

    @property
    def host(self) -> str: ...

    @property
    def pid(self) -> int: ...

    @property
    def seen_at(self) -> float: ...


W = TypeVar("W", bound=SeenWorker)


def worker_alive(
    worker: SeenWorker, now: float, *, lease_s: float = LEASE_S, host: str | None = None
) -> bool:
    """On this host (``host``, default the machine's name): its process exists. Elsewhere: it sent a
    heartbeat within ``lease_s``."""
    if worker.host == (socket.gethostname() if host is None else host):
        return pid_alive(worker.pid)
    return now - worker.seen_at <= lease_s


def live_workers(workers: Iterable[W], now: float) -> list[W]:
    """The workers that run by :func:`worker_alive` (what ``tuneq submit``, ``tuneq daemon status`` and the
    TUI's banner ask: "is a worker running?")."""
    return [w for w in workers if worker_alive(w, now)]


def pid_alive(pid: int) -> bool:
    """Whether a process ``pid`` runs: it exists and is no zombie. Our own pid counts as gone (where we
    ask about another process, finding ourselves means its pid was reused)."""
    if pid == os.getpid():
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return not _is_zombie(pid)


def _is_zombie(pid: int) -> bool:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False  # no /proc (macOS): trust kill(pid, 0)
    return stat.rpartition(")")[2].split()[0] == "Z"
