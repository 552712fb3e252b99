"""The worker's steps, each a function of the store, a clock and the worker's runtime state.

One tick runs them in this order: :func:`heartbeat` → :func:`reap` → :func:`sweep` → :func:`claim_ready`.
:func:`shutdown` ends the worker. A test can drive any step by itself with a hand-moved clock.
"""

from __future__ import annotations

import functools
import logging
import os
import secrets
import socket
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from runner.backends.base import Backend, Launch
from runner.backends.supervise import Supervised, supervise
from runner.core.jobstate import JobState
from runner.core.present import WAITING_FOR_GPU
from runner.core.rundir import RunDir
from runner.core.tail import file_end
from runner.core.workers import LEASE_S, pid_alive, worker_alive
from runner.spec import JobSpec, SpecError, parse_spec
from runner.spec.load import with_model_base
from runner.store import (
    Fenced,
    Job,
    JobNotFound,
    Owner,
    Progress,
    StateConflict,
    Store,
    StoreError,
    WorkerInfo,
)
from runner.worker.clock import Clock
from runner.worker.follow import Follower
from runner.worker.gpus import pick
from runner.worker.settle import Verdict, exit_verdict, settle, stopped_verdict

log = logging.getLogger("tuneq.worker")


@dataclass(frozen=True)
class WorkerConfig:
    """Timings of the worker loop, in seconds."""

    lease_s: float = LEASE_S  # a running job's lease; a heartbeat renews it
    heartbeat_s: float = 5.0
    sweep_s: float = 5.0  # how often to look for jobs whose worker is gone
    busy_poll_s: float = 0.1  # tick interval while a job runs
    idle_poll_s: float = 0.25  # tick interval while idle (submit → start latency)
    mirror_s: float = 0.5  # at most one progress write per job this often
    grace_s: float = 20.0  # SIGTERM → SIGKILL, time for a pipeline to checkpoint
    cpu_jobs: int = 1  # jobs at once on a machine without GPUs (with GPUs: as many as their GPUs allow)
    claims_per_turn: int = 32  # jobs claimed and started in one turn at most (starts do not wait)


@dataclass
class Running:
    """A job this worker runs: its live handle and event follower (never persisted)."""

    job_id: int
    owner: Owner  # this worker and the attempt it runs: every write about the job names it (the fence)
    pipeline: Supervised
    follower: Follower
    gpus: tuple[int, ...] = ()  # as in its Launch: device indices, or ANY_GPU on a cluster
    mirrored: Progress = field(default_factory=Progress)
    mirrored_at: float = 0.0
    stored_handle: str | None = None  # what the store holds; written again when the backend knows more
    verdict: Verdict | None = None  # how it ended, kept until the store has recorded it


def new_worker_info(now: float) -> WorkerInfo:
    """A fresh worker identity on this host: ``<host>-<pid>-<random>``, the id the store and the backends'
    container labels both use."""
    host, pid = socket.gethostname(), os.getpid()
    return WorkerInfo(f"{host}-{pid}-{secrets.token_hex(3)}", host, pid, now, now)


@dataclass
class WorkerRuntime:
    """Everything one worker holds in memory."""

    info: WorkerInfo
    backends: dict[str, Backend]
    config: WorkerConfig = field(default_factory=WorkerConfig)
    gpus: tuple[int, ...] = ()  # this host's GPUs, or ANY_GPU per GPU of a cluster; empty: no GPU accounting
    count_gpus: Callable[[], tuple[int, ...]] | None = None  # recounts ``gpus`` each heartbeat (a cluster's)
    free_gpus: Callable[[], int] | None = None  # a cluster's GPUs free for another start, asked each turn
    jobs: dict[int, Running] = field(default_factory=dict)
    last_heartbeat: float = float("-inf")
    last_sweep: float = float("-inf")

    @classmethod
    def create(
        cls,
        backends: dict[str, Backend],
        config: WorkerConfig,
        now: float,
        gpus: tuple[int, ...] = (),
        info: WorkerInfo | None = None,
    ) -> WorkerRuntime:
        """A runtime with the worker identity ``info`` (a fresh one on this host by default)."""
        return cls(info or new_worker_info(now), backends, config, gpus)

    def job_slots(self) -> int:
        """How many jobs may run at once: one per GPU, or ``config.cpu_jobs`` on a machine without any."""
        return len(self.gpus) if self.gpus else self.config.cpu_jobs

    def gpus_for(self, spec: JobSpec) -> tuple[int, ...] | None:
        """GPUs to give a job now (its :attr:`Launch.gpus`): ``()`` without GPU accounting, ``None`` while
        too few are free."""
        if not self.gpus or spec.run.gpus == 0:
            return ()
        free = Counter(self.gpus) - Counter(g for run in self.jobs.values() for g in run.gpus)
        return pick(free.elements(), spec.run.gpus)


# --- heartbeat ----------------------------------------------------------------------------------------


def heartbeat(store: Store, clock: Clock, w: WorkerRuntime, *, force: bool = False) -> None:
    """Renew the worker's and its jobs' leases; drop jobs a sweeper took away (stopping their process)."""
    now = clock.now()
    if not force and now - w.last_heartbeat < w.config.heartbeat_s:
        return
    held = store.heartbeat(w.info, now=now, lease_s=w.config.lease_s)
    w.last_heartbeat = now
    for run in [r for r in w.jobs.values() if held.get(r.job_id) != r.owner.attempt]:
        let_go(w, run, f"job {run.job_id} was taken from this worker (lease expired)")
    if w.count_gpus is not None:
        w.gpus = w.count_gpus()


# --- reap ---------------------------------------------------------------------------------------------


def reap(store: Store, clock: Clock, w: WorkerRuntime) -> None:
    """Mirror progress of running jobs, act on cancel requests and record the ones that ended.

    A job is forgotten only once its end is recorded: if the store fails meanwhile, the next turn
    records the verdict kept on the :class:`Running`. A job the store says is no longer this attempt's
    (:class:`Fenced`) is let go: its pipeline is stopped, its end not recorded.
    """
    for run in list(w.jobs.values()):
        try:
            if run.verdict is None:
                _check(store, clock, w, run)
            if run.verdict is not None:
                _record_end(store, clock, w, run)
        except Fenced as exc:
            let_go(w, run, str(exc))


def let_go(w: WorkerRuntime, run: Running, why: str) -> None:
    """Stop the pipeline of an attempt that is no longer this worker's (at once: another attempt may be
    using its run directory) and forget the job."""
    log.warning("%s: stopping its pipeline", why)
    run.pipeline.stop(grace_s=0)
    w.jobs.pop(run.job_id, None)


def _check(store: Store, clock: Clock, w: WorkerRuntime, run: Running) -> None:
    """Store the handle if new (the node, once a cluster job has one), mirror progress, act on a cancel
    request, poll the pipeline."""
    _store_handle(store, clock, run)
    mirror(store, clock, w, run)
    try:
        job = store.get(run.job_id)
    except JobNotFound:  # the queue database was replaced under the worker
        log.warning("job %d is no longer in the queue: stopping its pipeline", run.job_id)
        run.pipeline.stop(grace_s=w.config.grace_s)
        w.jobs.pop(run.job_id, None)
        return
    if job.cancel_requested:
        _stop(store, clock, w, run, job, grace_s=w.config.grace_s, why="cancelled by the user")
        return
    outcome = run.pipeline.poll()
    if outcome is not None:
        run.follower.read()
        run.verdict = exit_verdict(outcome, run.follower)


def mirror(store: Store, clock: Clock, w: WorkerRuntime, run: Running, *, force: bool = False) -> None:
    """Copy a job's latest stage and progress into the store (throttled to ``mirror_s``)."""
    now = clock.now()
    if not force and now - run.mirrored_at < w.config.mirror_s:
        return
    run.follower.read()
    run.mirrored_at = now
    if run.follower.progress != run.mirrored:
        store.update_progress(run.job_id, run.owner, run.follower.progress, now=now)
        run.mirrored = run.follower.progress


def _stop(
    store: Store, clock: Clock, w: WorkerRuntime, run: Running, job: Job, *, grace_s: float, why: str
) -> None:
    """Stop a job's pipeline and keep its verdict on ``run`` (recorded by :func:`_record_end`)."""
    _keep_lease(store, clock, w)
    run.pipeline.stop(grace_s=grace_s)
    run.pipeline.poll()
    run.follower.read()
    run.verdict = stopped_verdict(job, run.follower, why)


def _keep_lease(store: Store, clock: Clock, w: WorkerRuntime) -> None:
    """Renew the leases before a long grace period; a busy store must not keep a pipeline from stopping."""
    try:
        heartbeat(store, clock, w, force=True)
    except StoreError as exc:
        log.warning("heartbeat: %s", exc)


def _record_end(store: Store, clock: Clock, w: WorkerRuntime, run: Running) -> None:
    """Record an ended job's verdict, then forget the job (a store failure leaves it for the next turn)."""
    assert run.verdict is not None
    mirror(store, clock, w, run, force=True)
    _settle_if_ours(store, run.job_id, run.owner, run.verdict, clock.now())
    w.jobs.pop(run.job_id, None)


def _settle_if_ours(store: Store, job_id: int, owner: Owner, verdict: Verdict, now: float) -> None:
    """Record the end of ``owner``'s attempt unless the job moved on (another worker's sweep recorded it
    first: the refusal is logged and noted on the attempt) or is gone."""
    try:
        settle(store, job_id, owner, verdict, now)
    except (Fenced, StateConflict) as exc:
        log.warning("%s; leaving it as it is", exc)
    except JobNotFound:  # deleted meanwhile (a replaced queue database)
        log.warning("job %d is no longer in the queue; nothing to record", job_id)


# --- sweep --------------------------------------------------------------------------------------------


def sweep(store: Store, clock: Clock, w: WorkerRuntime, *, force: bool = False) -> None:
    """Find running jobs whose worker is gone (lease expired, or a dead process on this host) and end
    them as ``interrupted`` — stopping their pipeline if it still runs here — or as its ``job_end`` says."""
    now = clock.now()
    if not force and now - w.last_sweep < w.config.sweep_s:
        return
    w.last_sweep = now
    workers = {info.id: info for info in store.workers()}
    for job in store.list_jobs([JobState.RUNNING]):
        owner = workers.get(job.worker or "")
        if job.worker == w.info.id:
            if job.id not in w.jobs:  # claimed here, but the store failed before its start was tracked
                recover(store, clock, w, job, local=True, why="its worker lost track of it while starting it")
        elif _is_lost(job, owner, w.info, now):
            recover(store, clock, w, job, local=owner is not None and owner.host == w.info.host)
    for info in workers.values():
        if info.id != w.info.id and not worker_alive(info, now, lease_s=w.config.lease_s, host=w.info.host):
            store.unregister_worker(info.id)


def _is_lost(job: Job, owner: WorkerInfo | None, me: WorkerInfo, now: float) -> bool:
    if owner is None or (job.lease_until is not None and job.lease_until < now):
        return True
    return owner.host == me.host and not pid_alive(owner.pid)


def recover(
    store: Store,
    clock: Clock,
    w: WorkerRuntime,
    job: Job,
    *,
    local: bool,
    why: str = "its worker stopped responding (killed, rebooted or out of memory)",
) -> None:
    """End a job whose worker is gone. On the same host its pipeline is stopped if it still runs (it
    resumes from its checkpoint when requeued), unless its backend lets this worker follow it on
    (re-attach); a pipeline that finished meanwhile ends as it reported."""
    events = RunDir(Path(job.run_dir)).events
    launched = job.events_offset >= 0  # else claimed without an offset: no event is known to be its own
    follower = Follower.at(events, job.events_offset if launched else file_end(events))
    backend = _backend_of(store, w, job)
    handle = job.handle
    if handle is None and local and backend is not None and backend.name == "local":
        # its worker died between starting the pipeline and storing its pid: the run directory's lock says
        pid = RunDir(Path(job.run_dir)).pipeline_pid()
        handle = str(pid) if pid is not None else None
    found = Supervised(backend, handle) if local and handle and backend is not None else None
    if found is not None and found.poll() is None:
        if found.backend.reattaches and _reattach(store, clock, w, job, found, follower):
            return
        log.warning("job %d: its worker is gone; stopping its pipeline (pid %s)", job.id, handle)
        found.stop(grace_s=w.config.grace_s)
    follower.read()
    if (owner := job.owner) is not None:
        _settle_if_ours(store, job.id, owner, stopped_verdict(job, follower, why), clock.now())


def _reattach(
    store: Store, clock: Clock, w: WorkerRuntime, job: Job, pipeline: Supervised, follower: Follower
) -> bool:
    """Take over a running job whose pipeline runs on without its worker; False if it cannot be ours."""
    spec = _spec_of(store, job)
    gpus = w.gpus_for(spec) if spec is not None else None
    previous = job.owner
    if job.handle is None or previous is None or gpus is None or len(w.jobs) >= w.job_slots():
        return False
    if not store.take_over(job.id, w.info.id, previous=previous, now=clock.now(), lease_s=w.config.lease_s):
        return False
    owner = Owner(w.info.id, previous.attempt)
    w.jobs[job.id] = Running(job.id, owner, pipeline, follower, gpus, stored_handle=job.handle)
    log.info("job %d re-attached (%s %s)", job.id, pipeline.backend.name, pipeline.handle)
    return True


def _spec_of(store: Store, job: Job) -> JobSpec | None:
    try:
        return _parsed(store.spec_text(job.id), f"job {job.id}")
    except SpecError:
        return None


@functools.lru_cache(maxsize=256)
def _parsed(text: str, where: str) -> JobSpec:
    """A stored job file's spec, parsed once (a job waiting for GPUs is looked at every turn)."""
    return parse_spec(text, where)


def _backend_of(store: Store, w: WorkerRuntime, job: Job) -> Backend | None:
    spec = _spec_of(store, job)
    return None if spec is None else w.backends.get(spec.run.backend)


# --- claim --------------------------------------------------------------------------------------------


def claim_ready(store: Store, clock: Clock, w: WorkerRuntime) -> list[Job]:
    """Claim queued jobs in order (highest priority, then oldest) and start each, while slots and GPUs are
    free: up to ``claims_per_turn`` in one turn, as no start waits for its pipeline to run.

    One job per GPU: the next job waits (and nothing behind it overtakes it) until enough GPUs are free,
    its reason saying so.
    """
    started: list[Job] = []
    free: int | None = None  # a cluster's GPUs free now, asked once a turn
    while len(started) < w.config.claims_per_turn:
        head = store.next_queued()
        if head is None:
            break
        spec = _spec_of(store, head)
        gpus = w.gpus_for(spec) if spec is not None else ()  # an unreadable spec: launch fails the job
        if free is None and gpus and w.free_gpus is not None:
            free = w.free_gpus()
        if gpus is None or (free is not None and len(gpus) > free):
            why = f"{WAITING_FOR_GPU}: none of {len(w.gpus)} is free"
            if head.reason != why:
                store.note_waiting(head.id, why)
            break
        if len(w.jobs) >= w.job_slots():
            break
        job = store.claim(
            w.info.id,
            now=clock.now(),
            lease_s=w.config.lease_s,
            events_offset=lambda claimed: file_end(RunDir(Path(claimed.run_dir)).events),
        )
        if job is None:
            break
        launch(store, clock, w, job)
        started.append(job)
        free = None if free is None else free - len(gpus)
    return started


def launch(store: Store, clock: Clock, w: WorkerRuntime, job: Job) -> None:
    """Start a claimed job's pipeline (the backend returns at once; :func:`reap` follows it); a job that
    cannot start ends ``failed`` with the cause, and goes back to the queue (no retry spent) when no GPU is
    free for it after all."""
    run_dir = RunDir(Path(job.run_dir))
    owner = Owner(w.info.id, job.attempts)
    try:
        spec = _parsed(store.spec_text(job.id), f"job {job.id}")
    except SpecError as exc:
        verdict: Verdict = (JobState.FAILED, f"the stored job file no longer validates: {exc}")
        _settle_if_ours(store, job.id, owner, verdict, clock.now())
        return
    backend = w.backends.get(spec.run.backend)
    gpus = w.gpus_for(spec)
    if backend is None:
        reason = f"the '{spec.run.backend}' backend is not available to this worker"
    elif gpus is None:  # another worker claimed past our check: back to the queue
        verdict = (JobState.QUEUED, f"{WAITING_FOR_GPU}: none free on this worker when claimed")
        _settle_if_ours(store, job.id, owner, verdict, clock.now())
        return
    elif not run_dir.job_json.exists():
        reason = f"run directory {job.run_dir} is missing"
    else:
        try:
            spec = with_model_base(spec, run_dir.read_job_info().get("model_base"))
            pipeline = supervise(backend, Launch(str(job.id), run_dir.root, spec, gpus))
        except OSError as exc:
            reason = f"the pipeline could not start: {exc}"
        else:
            follower = Follower.at(run_dir.events, max(job.events_offset, 0))
            run = Running(job.id, owner, pipeline, follower, gpus)
            w.jobs[job.id] = run  # tracked before any further write, so a store failure cannot lose it
            log.info(
                "job %d started (attempt %d, %s %s)", job.id, job.attempts, backend.name, pipeline.handle
            )
            try:
                _store_handle(store, clock, run)
            except Fenced as exc:  # swept while this worker stalled between the claim and the start
                let_go(w, run, str(exc))
            return
    _settle_if_ours(store, job.id, owner, (JobState.FAILED, reason), clock.now())


def _store_handle(store: Store, clock: Clock, run: Running) -> None:
    """Record the job's handle as its backend now gives it (:class:`Fenced` if the attempt is not ours)."""
    handle = run.pipeline.backend.locate(run.pipeline.handle)
    if handle != run.stored_handle:
        store.set_handle(run.job_id, run.owner, handle, now=clock.now())
        run.stored_handle = handle


# --- shutdown -----------------------------------------------------------------------------------------


def shutdown(store: Store, clock: Clock, w: WorkerRuntime, *, force: bool) -> None:
    """Stop every running pipeline (``force``: SIGKILL at once), then record the jobs as interrupted; a
    store failure leaves what is not yet recorded to the next call (the pipelines are stopped first)."""
    for run in list(w.jobs.values()):
        if run.verdict is None:
            _keep_lease(store, clock, w)
            run.pipeline.stop(grace_s=0 if force else w.config.grace_s)  # idempotent
    for run in list(w.jobs.values()):
        if run.verdict is None:
            run.pipeline.poll()
            run.follower.read()
            try:
                job = store.get(run.job_id)
            except JobNotFound:
                log.warning("job %d is no longer in the queue; nothing to record", run.job_id)
                w.jobs.pop(run.job_id, None)
                continue
            run.verdict = stopped_verdict(job, run.follower, "its worker was stopped")
        try:
            _record_end(store, clock, w, run)
        except Fenced as exc:
            let_go(w, run, str(exc))
    store.unregister_worker(w.info.id)


def kill_all(w: WorkerRuntime) -> None:
    """Kill every running pipeline now (the second stop signal); :func:`shutdown` records them."""
    for run in list(w.jobs.values()):
        run.pipeline.stop(grace_s=0)
