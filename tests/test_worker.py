"""The worker's steps, driven in this process against real pipelines (the fake one) and a real store."""

from __future__ import annotations

import contextlib
import os
import socket
import sqlite3
import subprocess
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path

import pytest
from conftest import FAKE_PIPELINE, JobFactory, gone, runs_log

from runner import commands
from runner.backends.base import Launch, Outcome
from runner.backends.local import UNKNOWN_EXIT, LocalBackend
from runner.core.jobstate import JobState
from runner.core.present import WAITING_FOR_GPU, state_label
from runner.core.rundir import RunDir
from runner.spec import parse_spec
from runner.store import Job, Owner, Store, StoreLocked, WorkerInfo
from runner.worker import steps
from runner.worker.clock import Clock, SystemClock
from runner.worker.loop import Flags, run, tick
from runner.worker.settle import settle
from runner.worker.steps import WorkerConfig, WorkerRuntime

FAST = WorkerConfig(
    lease_s=30, heartbeat_s=0.2, sweep_s=0.2, busy_poll_s=0.02, idle_poll_s=0.02, mirror_s=0.05, grace_s=2
)


@dataclass
class HandClock:
    """A clock the test moves."""

    t: float = 1_000_000.0

    def now(self) -> float:
        return self.t

    def sleep(self, seconds: float) -> None:
        self.t += seconds


def worker(clock: Clock | None = None, config: WorkerConfig = FAST) -> WorkerRuntime:
    now = (clock or SystemClock()).now()
    return WorkerRuntime.create({"local": LocalBackend(FAKE_PIPELINE)}, config, now)


def drive(store: Store, w: WorkerRuntime, until: Callable[[], bool], timeout: float = 15.0) -> None:
    """Tick (on the real clock) until ``until()`` holds."""
    clock, flags = SystemClock(), Flags()
    deadline = time.monotonic() + timeout
    while not until():
        assert time.monotonic() < deadline, "timed out"
        tick(store, clock, w, flags)
        time.sleep(0.02)


def submit(store: Store, path: Path) -> Job:
    (job,) = commands.submit(store, [path])
    return job


def ended(store: Store, *ids: int) -> Callable[[], bool]:
    return lambda: all(store.get(i).state.is_finished for i in ids)


def started(store: Store, job_id: int, step: int = 1) -> Callable[[], bool]:
    return lambda: (store.get(job_id).progress.step or 0) >= step


def test_a_job_runs_and_its_progress_is_mirrored(store: Store, make_job: JobFactory) -> None:
    job = submit(store, make_job("a", "steps=4 sleep=0.4"))
    w = worker()
    drive(store, w, started(store, job.id, 2))
    mid = store.get(job.id)
    assert (mid.state, mid.progress.stage, mid.progress.max_steps, mid.handle) == (
        JobState.RUNNING,
        "train",
        4,
        next(iter(w.jobs.values())).pipeline.handle,
    )
    drive(store, w, ended(store, job.id))
    done = store.get(job.id)
    assert (done.state, done.reason, done.attempts) == (JobState.SUCCEEDED, None, 1)
    assert (done.progress.step, done.progress.loss) == (4, 0.5)
    assert (Path(done.run_dir) / "log.txt").exists()


def test_a_failing_job_fails_with_its_cause_and_the_next_still_runs(
    store: Store, make_job: JobFactory, tmp_path: Path
) -> None:
    bad = submit(store, make_job("bad", "fail"))
    crash = submit(store, make_job("crash", "crash"))
    good = submit(store, make_job("good"))
    drive(store, worker(), ended(store, bad.id, crash.id, good.id))
    assert (store.get(bad.id).state, store.get(bad.id).reason) == (JobState.FAILED, "fake failure")
    assert store.get(crash.id).state is JobState.FAILED
    assert "exit code 3" in (store.get(crash.id).reason or "")
    assert store.get(good.id).state is JobState.SUCCEEDED
    assert runs_log(tmp_path) == [str(bad.id), str(crash.id), str(good.id)]  # failures are not retried


def test_priority_decides_the_order(store: Store, make_job: JobFactory, tmp_path: Path) -> None:
    low = submit(store, make_job("low"))
    high = submit(store, make_job("high"))
    mid = submit(store, make_job("mid"))
    commands.set_priority(store, high.id, 10)
    commands.set_priority(store, mid.id, 5)
    drive(store, worker(), ended(store, low.id, high.id, mid.id))
    assert runs_log(tmp_path) == [str(high.id), str(mid.id), str(low.id)]


def test_cancel_while_running_stops_the_process_group(store: Store, make_job: JobFactory) -> None:
    job = submit(store, make_job("long", "steps=100 sleep=60"))
    w = worker()
    drive(store, w, started(store, job.id))
    pid = int(next(iter(w.jobs.values())).pipeline.handle)
    commands.cancel(store, job.id)
    assert store.get(job.id).state is JobState.RUNNING  # an intent until the worker acts
    drive(store, w, ended(store, job.id))
    cancelled = store.get(job.id)
    assert (cancelled.state, cancelled.reason) == (JobState.CANCELLED, "cancelled by the user")
    with pytest.raises(ProcessLookupError):
        os.killpg(pid, 0)


def test_cancel_escalates_to_sigkill(store: Store, make_job: JobFactory, tmp_path: Path) -> None:
    job = submit(store, make_job("stubborn", "steps=100 sleep=60 ignore-term"))
    w = worker(config=replace(FAST, grace_s=0.3))
    drive(store, w, started(store, job.id))
    (pid,) = [int(line.split()[1]) for line in (tmp_path / "runs.log").read_text().splitlines()]
    commands.cancel(store, job.id)
    drive(store, w, ended(store, job.id))
    assert store.get(job.id).state is JobState.CANCELLED
    assert (Path(job.run_dir) / "sigterm").read_text() == "ignored\n"  # it got SIGTERM and lived on...
    assert gone(pid)  # ...until SIGKILL: it would have slept for another minute


def test_retry_of_a_failed_job_reuses_its_run_directory(store: Store, make_job: JobFactory) -> None:
    job = submit(store, make_job("flaky", "fail-first"))
    w = worker()
    drive(store, w, ended(store, job.id))
    assert store.get(job.id).state is JobState.FAILED
    commands.retry(store, job.id)
    drive(store, w, ended(store, job.id))
    done = store.get(job.id)
    assert (done.state, done.attempts) == (JobState.SUCCEEDED, 2)
    assert (Path(done.run_dir) / "attempts").read_text() == "2"


def test_a_dead_workers_job_is_interrupted_its_pipeline_stopped_and_requeued(
    store: Store, make_job: JobFactory
) -> None:
    job = submit(store, make_job("long", "steps=100 sleep=60", retries=1))
    dead = worker()
    drive(store, dead, started(store, job.id))
    pid = int(next(iter(dead.jobs.values())).pipeline.handle)
    # The first worker vanishes without a word; it ran in this process, so its pid counts as dead here.
    alive = worker()
    steps.sweep(store, SystemClock(), alive, force=True)
    requeued = store.get(job.id)
    assert (requeued.state, requeued.retries_left) == (JobState.QUEUED, 0)
    assert "worker stopped responding" in (requeued.reason or "")
    assert dead.backends["local"].poll(str(pid)) is not None  # reap it (a dead worker's init would)
    with pytest.raises(ProcessLookupError):
        os.killpg(pid, 0)
    assert dead.info.id not in {w.id for w in store.workers()}


def test_a_dead_worker_stays_known_until_its_jobs_are_recovered_so_their_pipelines_are_stopped(
    store: Store, make_job: JobFactory
) -> None:
    job = submit(store, make_job("long", "steps=100 sleep=60", retries=1))
    dead = worker()
    drive(store, dead, started(store, job.id))
    pid = int(dead.jobs[job.id].pipeline.handle)
    store.unregister_worker(dead.info.id)  # a sweep that saw it alive, then found it dead (killed meanwhile)
    steps.sweep(store, SystemClock(), worker(), force=True)  # the next sweep still knows its host
    assert store.get(job.id).state is JobState.QUEUED
    assert dead.backends["local"].poll(str(pid)) is not None
    with pytest.raises(ProcessLookupError):
        os.killpg(pid, 0)  # stopped: a second attempt will not run beside it
    assert dead.info.id not in {w.id for w in store.workers()}


def test_a_pipeline_whose_worker_died_before_storing_its_pid_is_found_by_its_lock_and_stopped(
    store: Store, make_job: JobFactory, tmp_path: Path
) -> None:
    job = submit(store, make_job("long", "steps=10 sleep=5", retries=1))
    dead = subprocess.Popen(["true"])
    dead.wait()  # a worker of this host, killed right after starting the pipeline
    store.heartbeat(WorkerInfo("dead", socket.gethostname(), dead.pid, 0, 0), now=time.time(), lease_s=60)
    claimed = store.claim("dead", now=time.time(), lease_s=60)
    assert claimed is not None
    spec = parse_spec(store.spec_text(job.id), "job")
    orphan = LocalBackend(FAKE_PIPELINE).start(Launch(str(job.id), Path(job.run_dir), spec))
    run_dir = RunDir(Path(job.run_dir))
    wait = time.monotonic() + 15
    while run_dir.pipeline_pid() != int(orphan):
        assert time.monotonic() < wait, "the pipeline never took its run directory's lock"
        time.sleep(0.05)
    assert store.get(job.id).handle is None
    w = worker()
    steps.sweep(store, SystemClock(), w, force=True)
    assert store.get(job.id).state is JobState.QUEUED
    assert gone(int(orphan))  # stopped before the next attempt could start beside it
    drive(store, w, ended(store, job.id), timeout=30)
    assert (store.get(job.id).state, store.get(job.id).attempts) == (JobState.SUCCEEDED, 2)


def test_an_interrupted_job_without_retries_stays_interrupted(store: Store, make_job: JobFactory) -> None:
    job = submit(store, make_job("long", "steps=100 sleep=60", retries=0))
    drive(store, worker(), started(store, job.id))
    steps.sweep(store, SystemClock(), worker(), force=True)
    assert store.get(job.id).state is JobState.INTERRUPTED
    assert commands.retry(store, job.id).state is JobState.QUEUED


def test_a_job_that_finished_while_no_worker_watched_ends_as_it_reported(
    store: Store, make_job: JobFactory
) -> None:
    job = submit(store, make_job("quick", "steps=1 linger=1"))
    dead = worker()
    drive(store, dead, started(store, job.id))
    pid = int(dead.jobs[job.id].pipeline.handle)  # still running: its worker stops watching here
    deadline = time.monotonic() + 15
    while not gone(pid):  # it finishes; nobody reaps it
        assert time.monotonic() < deadline, "the pipeline did not end"
        time.sleep(0.02)
    steps.sweep(store, SystemClock(), worker(), force=True)
    assert store.get(job.id).state is JobState.SUCCEEDED


def test_an_expired_lease_on_another_host_is_swept_and_the_old_worker_lets_go(
    store: Store, make_job: JobFactory
) -> None:
    clock = HandClock()
    job = submit(store, make_job("long", "steps=100 sleep=60"))
    remote = worker(clock)
    remote.info = replace(remote.info, host="elsewhere")
    steps.heartbeat(store, clock, remote, force=True)
    steps.claim_ready(store, clock, remote)
    pipeline = next(iter(remote.jobs.values())).pipeline
    here = worker(clock)
    steps.sweep(store, clock, here, force=True)
    assert store.get(job.id).state is JobState.RUNNING  # lease still valid
    clock.t += FAST.lease_s + 1
    steps.sweep(store, clock, here, force=True)
    assert store.get(job.id).state is JobState.QUEUED  # interrupted, then requeued by its budget
    steps.heartbeat(store, clock, remote, force=True)  # the old worker wakes up: the job is not its any more
    assert remote.jobs == {}
    assert pipeline.poll() is not None


def test_shutdown_interrupts_and_requeues_the_running_job(store: Store, make_job: JobFactory) -> None:
    job = submit(store, make_job("long", "steps=100 sleep=60"))
    w = worker()
    drive(store, w, started(store, job.id))
    flags = Flags(stops=1)
    run(store, SystemClock(), w, flags)
    stopped = store.get(job.id)
    assert (stopped.state, stopped.reason) == (JobState.QUEUED, "its worker was stopped")
    assert store.workers() == []


def test_a_job_that_ends_while_the_database_is_locked_settles_once_the_lock_lifts(
    home: Path, make_job: JobFactory
) -> None:
    with Store(timeout=0.1) as store:
        job = submit(store, make_job("quick", "steps=1 linger=1"))
        w = worker(config=replace(FAST, heartbeat_s=60, sweep_s=60))  # reap meets the lock, as it mostly does
        drive(store, w, started(store, job.id))
        pid = int(w.jobs[job.id].pipeline.handle)
        blocker = sqlite3.connect(store.path, isolation_level=None)
        blocker.execute("BEGIN IMMEDIATE")  # another process writes for longer than the busy timeout
        deadline = time.monotonic() + 15
        while not gone(pid):
            assert time.monotonic() < deadline, "the pipeline did not end"
            time.sleep(0.05)
        for _ in range(5):  # the worker notices the end while the store refuses every write
            with contextlib.suppress(StoreLocked):  # what the loop did with a locked tick before
                tick(store, SystemClock(), w, Flags())
        assert store.get(job.id).state is JobState.RUNNING
        blocker.execute("ROLLBACK")
        drive(store, w, ended(store, job.id), timeout=5)
        assert store.get(job.id).state is JobState.SUCCEEDED
        assert w.jobs == {}


def test_a_claim_starts_a_new_events_offset(store: Store, make_job: JobFactory) -> None:
    job = submit(store, make_job("flaky", "fail-first", retries=1))
    drive(store, worker(), ended(store, job.id))
    assert store.get(job.id).state is JobState.FAILED  # its events end with a failing job_end
    commands.retry(store, job.id)
    store.claim("gone-before-launch", now=time.time(), lease_s=60)  # dies before starting the pipeline
    steps.sweep(store, SystemClock(), worker(), force=True)
    requeued = store.get(job.id)  # the first attempt's job_end is not this attempt's
    assert (requeued.state, requeued.retries_left) == (JobState.QUEUED, 0)
    assert "worker stopped responding" in (requeued.reason or "")


def test_an_interrupted_end_and_its_requeue_are_one_transaction(store: Store, make_job: JobFactory) -> None:
    job = submit(store, make_job("long", retries=1))
    store.claim("w", now=time.time(), lease_s=60)
    statements: list[str] = []
    store._conn.set_trace_callback(statements.append)
    settle(store, job.id, Owner("w", 1), (JobState.INTERRUPTED, "its worker was stopped"), time.time())
    store._conn.set_trace_callback(None)
    assert store.get(job.id).state is JobState.QUEUED
    assert [s for s in statements if s in ("BEGIN IMMEDIATE", "COMMIT")] == ["BEGIN IMMEDIATE", "COMMIT"]


class LockedAfterStart(LocalBackend):
    """The local backend on a machine where another process takes the database right after a start."""

    def __init__(self, db: Path) -> None:
        super().__init__(FAKE_PIPELINE)
        self.blocker = sqlite3.connect(db, isolation_level=None)

    def start(self, launch: Launch) -> str:
        handle = super().start(launch)
        self.blocker.execute("BEGIN IMMEDIATE")
        return handle


def test_a_pipeline_whose_handle_cannot_be_stored_is_still_followed_and_recorded(
    home: Path, make_job: JobFactory
) -> None:
    with Store(timeout=0.1) as store:
        job = submit(store, make_job("quick", "steps=2 sleep=1"))
        backend = LockedAfterStart(store.path)
        w = WorkerRuntime.create({"local": backend}, FAST, time.time())
        with contextlib.suppress(StoreLocked):  # what the loop did with a locked tick before
            tick(store, SystemClock(), w, Flags())
        assert store.get(job.id).handle is None  # started, but the store refused its handle
        backend.blocker.execute("ROLLBACK")
        drive(store, w, lambda: store.get(job.id).handle is not None, timeout=5)
        drive(store, w, ended(store, job.id), timeout=10)
        assert store.get(job.id).state is JobState.SUCCEEDED


def test_a_job_claimed_but_lost_before_its_start_is_recovered_by_its_own_worker(
    store: Store, make_job: JobFactory
) -> None:
    job = submit(store, make_job("a", retries=1))
    w = worker()
    steps.heartbeat(store, SystemClock(), w, force=True)
    store.claim(w.info.id, now=time.time(), lease_s=60)  # then the store failed before the launch
    drive(store, w, ended(store, job.id))
    done = store.get(job.id)
    assert (done.state, done.attempts) == (JobState.SUCCEEDED, 2)


def test_failing_turns_back_off_and_never_end_the_loop(home: Path) -> None:
    @dataclass
    class StoppingClock(HandClock):
        """Stops the worker after eight pauses, then frees the database."""

        pauses: list[float] = field(default_factory=list)

        def sleep(self, seconds: float) -> None:
            super().sleep(seconds)
            self.pauses.append(seconds)
            if len(self.pauses) == 8:
                flags.stops = 1
                blocker.execute("ROLLBACK")

    flags = Flags()
    with Store(timeout=0.01) as store:
        blocker = sqlite3.connect(store.path, isolation_level=None)
        blocker.execute("BEGIN IMMEDIATE")
        clock = StoppingClock()
        run(store, clock, worker(clock), flags)
        assert clock.pauses[:8] == [0.04, 0.08, 0.16, 0.32, 0.64, 1.28, 2.56, 5.0]
        assert store.workers() == []  # the shutdown went through once the database was free


@pytest.mark.parametrize("cpu_jobs", [1, 2])
def test_a_machine_without_gpus_runs_cpu_jobs_at_once(
    store: Store, make_job: JobFactory, cpu_jobs: int
) -> None:
    jobs = [submit(store, make_job(f"j{i}", "steps=3 sleep=0.3")) for i in range(3)]
    w = worker(config=replace(FAST, cpu_jobs=cpu_jobs))
    most = 0

    def count_running() -> bool:
        nonlocal most
        most = max(most, sum(store.get(j.id).state is JobState.RUNNING for j in jobs))
        return ended(store, *(j.id for j in jobs))()

    drive(store, w, count_running, timeout=30)
    assert most == cpu_jobs


NO_ROOM = "no-room"


class NoRoomOnce(LocalBackend):
    """The local backend, but its first start finds no room (as on a cluster none of whose nodes had a
    free GPU in time): that attempt ends ``not_started``."""

    def __init__(self) -> None:
        super().__init__(FAKE_PIPELINE)
        self.refused = 0

    def start(self, launch: Launch) -> str:
        if not self.refused:
            self.refused += 1
            return NO_ROOM
        return super().start(launch)

    def poll(self, handle: str) -> Outcome | None:
        if handle == NO_ROOM:
            return Outcome(UNKNOWN_EXIT, f"{WAITING_FOR_GPU}: no node had one free", not_started=True)
        return super().poll(handle)


def test_a_start_that_found_no_room_queues_the_job_again_without_spending_a_retry(
    store: Store, make_job: JobFactory
) -> None:
    job = submit(store, make_job("waits", retries=1))
    backend = NoRoomOnce()
    w = WorkerRuntime.create({"local": backend}, FAST, time.time())
    drive(store, w, ended(store, job.id))
    done = store.get(job.id)
    assert (done.state, done.attempts, done.retries_left) == (JobState.SUCCEEDED, 2, 1), done.reason
    first = store.attempts(job.id)[0]
    assert first.reason is not None and first.reason.startswith(WAITING_FOR_GPU)


def with_gpus(path: Path, gpus: int) -> Path:
    path.write_text(path.read_text().replace("[run]\n", f"[run]\ngpus = {gpus}\n"))
    return path


def test_one_turn_claims_as_many_jobs_as_gpus_are_free_and_the_next_waits_visibly(
    store: Store, make_job: JobFactory
) -> None:
    jobs = [submit(store, with_gpus(make_job(f"j{i}", "steps=2 sleep=0.5"), 1)) for i in range(3)]
    w = WorkerRuntime.create({"local": LocalBackend(FAKE_PIPELINE)}, FAST, time.time(), gpus=(0, 3))
    started = steps.claim_ready(store, SystemClock(), w)
    assert [j.id for j in started] == [jobs[0].id, jobs[1].id]  # two GPUs, two starts in one turn
    assert sorted(run.gpus for run in w.jobs.values()) == [(0,), (3,)]
    third = store.get(jobs[2].id)
    assert third.state is JobState.QUEUED and third.reason and third.reason.startswith(WAITING_FOR_GPU)
    assert state_label(third.state, third.cancel_requested, third.reason) == "waiting"
    drive(store, w, ended(store, *(j.id for j in jobs)), timeout=30)
    assert [store.get(j.id).retries_left for j in jobs] == [1, 1, 1]
    last = store.get(jobs[2].id)
    assert last.state is JobState.SUCCEEDED and last.reason is None  # the claim cleared the note
