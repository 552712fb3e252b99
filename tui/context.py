"""What every screen needs: the store, the job files' folder, a clock and the polling interval."""

from __future__ import annotations

import getpass
import socket
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from runner.core.workers import worker_alive
from runner.store import Store


def ssh_target() -> str:
    """``user@host`` of this machine, as a laptop would reach it with scp or rsync."""
    return f"{getpass.getuser()}@{socket.getfqdn()}"


@dataclass(frozen=True)
class TuiContext:
    """Shared by the screens; tests inject a fixed clock and a short poll interval."""

    store: Store
    jobs_dir: Path
    clock: Callable[[], float] = time.time
    poll_s: float = 0.5
    ssh_target: str = field(default_factory=ssh_target)

    def worker_alive(self) -> bool:
        """Some worker has sent a heartbeat recently (a blocking store read: call it from a thread)."""
        now = self.clock()
        return any(worker_alive(w, now) for w in self.store.workers())
