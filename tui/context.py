"""What every screen needs: the store, the job files' folder, how a laptop reaches this machine, a clock and
the polling interval."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from runner.core.workers import live_workers
from runner.ship.reach import SshHost
from runner.store import Store


@dataclass(frozen=True)
class TuiContext:
    """Shared by the screens; tests inject a fixed clock and a short poll interval."""

    store: Store
    jobs_dir: Path
    ship_host: SshHost  # runner.ship.reach.ship_host of the store's state directory
    clock: Callable[[], float] = time.time
    poll_s: float = 0.5

    def worker_alive(self) -> bool:
        """Some worker has sent a heartbeat recently (a blocking store read: call it from a thread)."""
        return bool(live_workers(self.store.workers(), self.clock()))
