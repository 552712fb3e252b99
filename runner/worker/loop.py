"""The worker loop: heartbeat → reap → sweep → claim → sleep, until a signal says stop.

Signal handlers only count signals. After the first SIGTERM/SIGINT/SIGHUP the loop stops claiming,
stops the running pipeline (SIGTERM, then SIGKILL after the grace period, so it can checkpoint) and
records it ``interrupted`` (requeued while its retry budget lasts). A second signal during that
shutdown cuts the grace period short: the pipeline is killed at once.
"""

from __future__ import annotations

import logging
import os
import signal
import socket
import sys
from dataclasses import dataclass
from types import FrameType

from runner.backends.factory import make_backend
from runner.gpus import GpuError, discover
from runner.paths import state_dir
from runner.store import Store, StoreError, StoreLocked
from runner.worker import steps
from runner.worker.clock import Clock, SystemClock
from runner.worker.pidfile import PidLock
from runner.worker.steps import WorkerConfig, WorkerRuntime

log = logging.getLogger("tuneq.worker")
STOP_SIGNALS = (signal.SIGTERM, signal.SIGINT, signal.SIGHUP)


class ForceStop(Exception):
    """Raised by the second stop signal while the worker is shutting down."""


@dataclass
class Flags:
    """What the signal handlers tell the loop."""

    stops: int = 0
    stopping: bool = False  # in the graceful shutdown, where a second signal forces

    def on_signal(self, signum: int, frame: FrameType | None) -> None:
        """Count a stop signal; during a graceful shutdown, interrupt it."""
        self.stops += 1
        if self.stopping:
            raise ForceStop


def tick(store: Store, clock: Clock, w: WorkerRuntime, flags: Flags) -> None:
    """One round of the loop."""
    steps.heartbeat(store, clock, w)
    steps.reap(store, clock, w)
    steps.sweep(store, clock, w)
    if not flags.stops:
        steps.claim_next(store, clock, w)


def run(store: Store, clock: Clock, w: WorkerRuntime, flags: Flags) -> None:
    """Run ticks until a stop signal, then shut down; a busy database only delays a tick."""
    steps.heartbeat(store, clock, w, force=True)
    steps.sweep(store, clock, w, force=True)
    while not flags.stops:
        try:
            tick(store, clock, w, flags)
        except StoreLocked as exc:
            log.warning("%s", exc)
        clock.sleep(w.config.busy_poll_s if w.jobs else w.config.idle_poll_s)
    try:
        flags.stopping = flags.stops < 2
        steps.shutdown(store, clock, w, force=not flags.stopping)
    except ForceStop:
        flags.stopping = False
        log.warning("second stop signal: killing the running pipeline")
        steps.shutdown(store, clock, w, force=True)


def serve(*, extra: bool = False, config: WorkerConfig | None = None) -> int:
    """``tuneq worker``: run a worker in the foreground until signalled; 1 if one already runs here."""
    logging.basicConfig(level=logging.INFO, stream=sys.stdout, format="%(asctime)s %(message)s")
    lock = None if extra else PidLock(state_dir())
    if lock is not None and not lock.acquire():
        print(
            f"a worker is already running for {state_dir()} (pid {lock.holder()}); "
            "pass --extra to run another one",
            file=sys.stderr,
        )
        return 1
    flags = Flags()
    for sig in STOP_SIGNALS:
        signal.signal(sig, flags.on_signal)
    clock = SystemClock()
    try:
        with Store() as store:
            gpus = tuple(g.index for g in discover())
            worker_id = f"{socket.gethostname()}-{os.getpid()}"
            backends = {name: make_backend(name, worker_id) for name in ("local", "docker")}
            w = WorkerRuntime.create(backends, config or WorkerConfig(), clock.now(), gpus)
            log.info(
                "worker %s started (state directory %s, GPUs %s)",
                w.info.id,
                state_dir(),
                list(gpus) or "none",
            )
            run(store, clock, w, flags)
            log.info("worker %s stopped", w.info.id)
    except (StoreError, GpuError) as exc:
        print(f"tuneq worker: {exc}", file=sys.stderr)
        return 1
    finally:
        if lock is not None:
            lock.release()
    return 0
