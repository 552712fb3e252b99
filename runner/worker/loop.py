"""The worker loop: heartbeat → reap → sweep → claim → sleep, until a signal says stop.

Signal handlers only count signals; the loop acts on the count. After the first SIGTERM/SIGINT/SIGHUP
the loop stops claiming, stops the running pipelines (SIGTERM, then SIGKILL after the grace period, so
they can checkpoint) and records them ``interrupted`` (requeued while their retry budget lasts). A
second signal during that shutdown cuts the grace period short: the pipelines are killed at once.

A step that fails (a busy or replaced database, a container engine that does not answer) is logged
and runs again next turn, after a pause that grows while failures repeat; it never ends the worker
while pipelines run.
"""

from __future__ import annotations

import logging
import signal
import sys
import threading
from collections.abc import Callable
from dataclasses import dataclass
from types import FrameType

from runner.backends.base import Backend
from runner.backends.factory import make_backend
from runner.cluster.address import ClusterError, configured_address, forget_cluster_info
from runner.core.paths import state_dir
from runner.core.present import os_failure
from runner.store import Store, StoreError, StoreUnwritable
from runner.worker import notify, steps
from runner.worker.clock import Clock, SystemClock
from runner.worker.gpus import GpuError, discover
from runner.worker.pidfile import PidLock
from runner.worker.steps import WorkerConfig, WorkerRuntime, new_worker_info

log = logging.getLogger("tuneq.worker")
STOP_SIGNALS = (signal.SIGTERM, signal.SIGINT, signal.SIGHUP)
MAX_BACKOFF_S = 5.0  # the longest pause after repeated failing turns (below any lease)
NOTIFY_DRAIN_S = 10.0  # how long a stopping worker waits for notifications still being sent


@dataclass
class Flags:
    """What the signal handlers tell the loop."""

    stops: int = 0

    def on_signal(self, signum: int, frame: FrameType | None) -> None:
        """Count a stop signal (the loop acts on it)."""
        self.stops += 1


def _attempt(name: str, step: Callable[[], object]) -> bool:
    """Run one step; log a failure (it runs again next turn) instead of ending the worker."""
    try:
        step()
    except (StoreError, OSError) as exc:  # OSError includes BackendError (the container engine)
        log.warning("%s: %s (trying again)", name, exc)
        return False
    except Exception:  # anything unforeseen: the running pipelines must still be looked after
        log.exception("%s failed (trying again)", name)
        return False
    return True


def tick(store: Store, clock: Clock, w: WorkerRuntime, flags: Flags) -> bool:
    """One round of the loop; False if a step failed (logged; it runs again next round)."""
    ok = _attempt("heartbeat", lambda: steps.heartbeat(store, clock, w))
    ok = _attempt("reap", lambda: steps.reap(store, clock, w)) and ok
    ok = _attempt("sweep", lambda: steps.sweep(store, clock, w)) and ok
    if not flags.stops:
        ok = _attempt("claim", lambda: steps.claim_ready(store, clock, w)) and ok
    return ok


def run(store: Store, clock: Clock, w: WorkerRuntime, flags: Flags) -> None:
    """Run ticks until a stop signal, then shut down; failing turns back off, never end the loop."""
    _attempt("heartbeat", lambda: steps.heartbeat(store, clock, w, force=True))
    _attempt("sweep", lambda: steps.sweep(store, clock, w, force=True))
    failures = 0
    while not flags.stops:
        failures = 0 if tick(store, clock, w, flags) else min(failures + 1, 10)
        pause = w.config.busy_poll_s if w.jobs else w.config.idle_poll_s
        clock.sleep(min(pause * 2**failures, max(pause, MAX_BACKOFF_S)))
    shutdown(store, clock, w, flags)


def shutdown(store: Store, clock: Clock, w: WorkerRuntime, flags: Flags) -> None:
    """Stop the pipelines with their grace period in a thread while watching for a second signal, which
    kills them at once; then record what is not yet recorded (a few tries if the store fails)."""
    stopper = threading.Thread(
        target=_attempt,
        args=("shutdown", lambda: steps.shutdown(store, clock, w, force=flags.stops > 1)),
        daemon=True,
    )
    stopper.start()
    killed = flags.stops > 1
    while stopper.is_alive():
        stopper.join(0.05)
        if flags.stops > 1 and not killed:
            killed = True
            log.warning("second stop signal: killing the running pipelines")
            steps.kill_all(w)
    for _ in range(10):
        if _attempt("shutdown", lambda: steps.shutdown(store, clock, w, force=True)):
            return
        clock.sleep(MAX_BACKOFF_S / 5)


def serve(*, extra: bool = False, config: WorkerConfig | None = None, cluster: str | None = None) -> int:
    """``tuneq worker``: run a worker in the foreground until signalled; 1 if one already runs here or it
    cannot start, 2 if the queue or the state directory cannot be written.

    With a cluster address (``cluster``, else ``cluster.toml`` in the state directory) every job runs on a
    node of that Ray cluster, as many at once as its GPUs allow.
    """
    logging.basicConfig(level=logging.INFO, stream=sys.stdout, format="%(asctime)s %(message)s")
    lock = None if extra else PidLock(state_dir())
    if lock is not None:
        try:
            acquired = lock.acquire()
        except OSError as exc:  # a read-only state directory
            print(f"tuneq worker: cannot take the worker's lock: {os_failure(exc)}", file=sys.stderr)
            return 2
        if not acquired:
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
            store.check_writable()  # a read-only queue would fail every turn, for ever
            info = new_worker_info(clock.now())
            cluster = cluster or configured_address()
            count_gpus: Callable[[], tuple[int, ...]] | None = None
            free_gpus: Callable[[], int] | None = None
            if cluster:
                backends, count_gpus, free_gpus = _cluster_backends(cluster)
                gpus = count_gpus()
                for sig in STOP_SIGNALS:  # joining Ray installed its own handlers
                    signal.signal(sig, flags.on_signal)
            else:
                if not extra:  # submit no longer checks jobs against that cluster's nodes
                    forget_cluster_info()
                gpus = tuple(g.index for g in discover())
                backends = {name: make_backend(name, info.id) for name in ("local", "docker")}
            w = WorkerRuntime.create(backends, config or WorkerConfig(), clock.now(), gpus, info)
            w.count_gpus, w.free_gpus = count_gpus, free_gpus
            log.info(
                "worker %s started (state directory %s, GPUs %s)",
                w.info.id,
                state_dir(),
                f"{len(gpus)} on the cluster" if cluster else list(gpus) or "none",
            )
            run(store, clock, w, flags)
            notify.drain(NOTIFY_DRAIN_S)
            log.info("worker %s stopped", w.info.id)
    except StoreUnwritable as exc:
        print(f"tuneq worker: {exc}", file=sys.stderr)
        return 2
    except (StoreError, GpuError, ClusterError) as exc:
        print(f"tuneq worker: {exc}", file=sys.stderr)
        return 1
    finally:
        if lock is not None:
            lock.release()
    return 0


def _cluster_backends(
    address: str,
) -> tuple[dict[str, Backend], Callable[[], tuple[int, ...]], Callable[[], int]]:
    """Join the cluster; one backend runs every job there. The worker holds one ANY_GPU per GPU of the
    cluster (Ray picks the node and the devices; the count keeps the worker from claiming more than fit),
    recounted at each heartbeat as nodes come and go, and asks the backend how many are free before it
    claims (something else on the cluster may hold some)."""
    from runner.cluster.connect import cluster_gpus, connect  # only a worker given a cluster imports Ray

    seen = connect(address)  # before anything imports Ray: it sets how Ray finds its node address
    from runner.cluster.backend import RayBackend

    log.info("joined the Ray cluster at %s: GPUs per node %s", address, list(seen.node_gpus))
    backend = RayBackend()
    return {"local": backend, "docker": backend}, lambda: cluster_gpus(address), backend.free_gpus
