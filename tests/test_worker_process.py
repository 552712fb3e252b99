"""Workers as real processes: kill -9 and restart, SIGTERM, one worker per state directory, and two
workers racing over 200 jobs submitted from several processes at once."""

from __future__ import annotations

import os
import signal
import socket
import sqlite3
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from conftest import JobFactory, gone, runs_log

from runner import commands
from runner.core.jobstate import JobState
from runner.store import Owner, Store, WorkerInfo

_SERVE = "import sys; from runner.worker.loop import serve; from runner.worker.steps import WorkerConfig; sys.exit(serve"


@pytest.fixture
def spawn(tmp_path: Path) -> Iterator[Callable[..., subprocess.Popen[bytes]]]:
    """Start ``python -m runner.worker`` processes; kill leftovers at the end."""
    procs: list[subprocess.Popen[bytes]] = []

    def start(*args: str, config: str | None = None) -> subprocess.Popen[bytes]:
        """``config``: an extra worker with these ``WorkerConfig`` settings (``"lease_s=2, ..."``)."""
        log = (tmp_path / f"worker{len(procs)}.log").open("wb")
        command = ["-m", "runner.worker", *args]
        if config is not None:
            command = ["-c", f"{_SERVE}(extra=True, config=WorkerConfig({config})))"]
        proc = subprocess.Popen([sys.executable, *command], stdout=log, stderr=subprocess.STDOUT)
        procs.append(proc)
        return proc

    yield start
    for proc in procs:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def _messages(log: Path) -> list[str]:
    """The worker log's messages, without their time stamps."""
    return [line.split(" ", 2)[-1] for line in log.read_text().splitlines()]


def wait_for(check: Callable[[], bool], timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.05)


def test_kill_9_then_restart_resumes_the_job(
    store: Store, make_job: JobFactory, spawn, tmp_path: Path
) -> None:
    (job,) = commands.submit(store, [make_job("long", "steps=20 sleep=4")])
    (other,) = commands.submit(store, [make_job("next")])
    first = spawn()
    wait_for(lambda: (store.get(job.id).progress.step or 0) >= 2)
    pipeline = int(store.get(job.id).handle or 0)
    first.send_signal(signal.SIGKILL)
    first.wait()
    os.kill(pipeline, 0)  # the pipeline outlives its worker (its own session)...
    spawn()
    wait_for(lambda: store.get(other.id).state.is_finished)
    assert gone(pipeline)  # ...until the next worker stops it
    done = store.get(job.id)
    assert (done.state, done.attempts, done.retries_left) == (JobState.SUCCEEDED, 2, 0)
    assert store.get(other.id).state is JobState.SUCCEEDED
    assert runs_log(tmp_path) == [str(job.id), str(job.id), str(other.id)]


def test_sigterm_interrupts_the_job_and_exits_cleanly(
    store: Store, make_job: JobFactory, spawn, tmp_path: Path
) -> None:
    (job,) = commands.submit(store, [make_job("long", "steps=100 sleep=60", retries=0)])
    worker = spawn()
    wait_for(lambda: store.get(job.id).progress.step is not None)
    worker.send_signal(signal.SIGTERM)
    assert worker.wait(timeout=30) == 0, (tmp_path / "worker0.log").read_text()
    stopped = store.get(job.id)
    assert (stopped.state, stopped.reason) == (JobState.INTERRUPTED, "its worker was stopped"), stopped
    assert store.workers() == []


def test_one_worker_per_state_directory_unless_extra(store: Store, spawn, tmp_path: Path) -> None:
    spawn()
    wait_for(lambda: len(store.workers()) == 1)
    second = spawn()
    assert second.wait(timeout=30) == 1
    assert "already running" in (tmp_path / "worker1.log").read_text()
    spawn("--extra")
    wait_for(lambda: len(store.workers()) == 2)


def test_two_workers_run_200_jobs_submitted_concurrently_exactly_once(
    store: Store, make_job: JobFactory, spawn, tmp_path: Path
) -> None:
    path = make_job("many")
    spawn()
    spawn("--extra")
    script = (
        "import sys\nfrom runner import commands\nfrom runner.store import Store\n"
        "with Store() as s:\n    for _ in range(50):\n        commands.submit(s, [sys.argv[1]])\n"
    )
    submitters = [subprocess.Popen([sys.executable, "-c", script, str(path)]) for _ in range(4)]
    assert [p.wait(timeout=120) for p in submitters] == [0, 0, 0, 0]
    jobs = store.list_jobs()
    assert len(jobs) == 200
    wait_for(lambda: all(j.state.is_finished for j in store.list_jobs()), timeout=240)
    jobs = store.list_jobs()
    assert {j.state for j in jobs} == {JobState.SUCCEEDED}
    assert {j.attempts for j in jobs} == {1}
    runs = Counter(runs_log(tmp_path))
    assert sorted(runs) == sorted(str(j.id) for j in jobs)
    assert set(runs.values()) == {1}
    assert len({j.worker for j in jobs}) == 2  # both workers took part


def test_a_job_deleted_under_the_worker_stops_its_pipeline_and_the_worker_goes_on(
    store: Store, make_job: JobFactory, spawn, tmp_path: Path
) -> None:
    (job,) = commands.submit(store, [make_job("long", "steps=100 sleep=60")])
    (other,) = commands.submit(store, [make_job("next")])
    worker = spawn()
    wait_for(lambda: store.get(job.id).progress.step is not None)
    pipeline = int(store.get(job.id).handle or 0)
    with sqlite3.connect(store.path, isolation_level=None) as conn:  # a queue database replaced under it
        conn.execute("DELETE FROM jobs WHERE id = ?", (job.id,))
    wait_for(lambda: store.get(other.id).state.is_finished)
    assert store.get(other.id).state is JobState.SUCCEEDED
    assert gone(pipeline)
    assert worker.poll() is None, (tmp_path / "worker0.log").read_text()


def test_a_container_engine_error_is_logged_and_the_worker_goes_on(
    store: Store, make_job: JobFactory, spawn, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    docker_job = make_job("boxed")
    docker_job.write_text(docker_job.read_text() + 'backend = "docker"\n')
    (boxed,) = commands.submit(store, [docker_job])
    dead = subprocess.Popen(["true"])
    dead.wait()  # a worker of this host that died while its container ran
    store.heartbeat(WorkerInfo("dead", socket.gethostname(), dead.pid, 0, 0), now=time.time(), lease_s=60)
    store.claim("dead", now=time.time(), lease_s=60)
    store.set_handle(boxed.id, Owner("dead", 1), "0123456789ab", now=time.time())
    (other,) = commands.submit(store, [make_job("next")])
    monkeypatch.setenv("DOCKER_HOST", f"unix://{tmp_path}/no-engine.sock")  # the engine is gone
    worker = spawn()
    wait_for(lambda: store.get(other.id).state.is_finished)
    assert store.get(other.id).state is JobState.SUCCEEDED
    assert worker.poll() is None
    assert "sweep: no container engine answers" in (tmp_path / "worker0.log").read_text()


def test_a_second_sigterm_kills_the_pipeline_at_once(
    store: Store, make_job: JobFactory, spawn, tmp_path: Path
) -> None:
    (job,) = commands.submit(store, [make_job("stubborn", "steps=100 sleep=60 ignore-term", retries=0)])
    worker = spawn()  # its grace period is 20 s
    wait_for(lambda: store.get(job.id).progress.step is not None)
    pipeline = int(store.get(job.id).handle or 0)
    worker.send_signal(signal.SIGTERM)
    wait_for(lambda: (Path(job.run_dir) / "sigterm").exists())  # passed on to the pipeline, which ignored it
    assert worker.poll() is None and not gone(pipeline)  # waiting for the pipeline to checkpoint
    started = time.monotonic()
    worker.send_signal(signal.SIGTERM)
    assert worker.wait(timeout=10) == 0, (tmp_path / "worker0.log").read_text()
    assert time.monotonic() - started < 5
    assert gone(pipeline)
    stopped = store.get(job.id)
    assert (stopped.state, stopped.reason) == (JobState.INTERRUPTED, "its worker was stopped")
    assert "second stop signal" in (tmp_path / "worker0.log").read_text()


def test_sigterm_while_the_database_is_locked_still_stops_and_records_the_job(
    store: Store, make_job: JobFactory, spawn, tmp_path: Path
) -> None:
    (job,) = commands.submit(store, [make_job("long", "steps=100 sleep=60", retries=0)])
    worker = spawn()
    wait_for(lambda: store.get(job.id).progress.step is not None)
    pipeline = int(store.get(job.id).handle or 0)
    blocker = sqlite3.connect(store.path, isolation_level=None)
    blocker.execute("BEGIN IMMEDIATE")  # longer than the worker's busy timeout (5 s)
    worker.send_signal(signal.SIGTERM)
    wait_for(lambda: gone(pipeline), timeout=15)  # stopped although the store refuses writes
    log = tmp_path / "worker0.log"
    wait_for(lambda: any(line.startswith("shutdown:") for line in _messages(log)))  # its record waits
    blocker.execute("ROLLBACK")
    assert worker.wait(timeout=30) == 0, (tmp_path / "worker0.log").read_text()
    stopped = store.get(job.id)
    assert (stopped.state, stopped.reason) == (JobState.INTERRUPTED, "its worker was stopped")


def test_a_worker_stalled_past_its_lease_is_fenced_off_and_attempt_2_finishes(
    store: Store, make_job: JobFactory, spawn, tmp_path: Path
) -> None:
    """The stalled-worker race, step by step: worker A, blocked on the database lock, is stopped past its
    lease; worker B ends A's attempt and runs attempt 2; A resumes mid-turn (its heartbeat not yet due)
    and tries to record its own attempt's end. The store refuses it and A stops that attempt's pipeline."""
    (job,) = commands.submit(store, [make_job("long", "steps=24 sleep=12", retries=1)])
    a = spawn(config="lease_s=1.5, heartbeat_s=3600, sweep_s=0.2, grace_s=2")  # no heartbeat before it acts
    wait_for(lambda: (store.get(job.id).progress.step or 0) >= 1)
    first = int(store.get(job.id).handle or 0)
    blocker = sqlite3.connect(store.path, isolation_level=None)
    blocker.execute("BEGIN IMMEDIATE")  # A's next write waits for the lock...
    wait_for(lambda: "(trying again)" in (tmp_path / "worker0.log").read_text())  # (it met the lock)
    a.send_signal(signal.SIGSTOP)  # ...and A stalls there, past its lease
    blocker.execute("ROLLBACK")
    try:
        b = spawn(config="sweep_s=0.2, grace_s=2")
        wait_for(lambda: store.get(job.id).attempts == 2 and (store.get(job.id).progress.step or 0) >= 1)
        assert gone(first)  # B stopped attempt 1's pipeline when it swept the lost job
    finally:
        a.send_signal(signal.SIGCONT)
    wait_for(lambda: store.attempts(job.id)[0].fenced_at is not None)  # A's late write was refused...
    assert store.get(job.id).state is JobState.RUNNING  # ...and attempt 2 goes on
    wait_for(lambda: store.get(job.id).state.is_finished)
    done = store.get(job.id)
    workers = {w.pid: w.id for w in store.workers()}
    assert (done.state, done.attempts, done.worker) == (JobState.SUCCEEDED, 2, workers[b.pid])
    lost, finished = store.attempts(job.id)
    assert (lost.worker, lost.state) == (workers[a.pid], JobState.INTERRUPTED)
    assert "worker stopped responding" in (lost.reason or "")
    assert (finished.state, finished.fenced_at) == (JobState.SUCCEEDED, None)
    assert "no longer owns it" in (tmp_path / "worker0.log").read_text()
    assert a.poll() is None and b.poll() is None  # both workers go on
    assert runs_log(tmp_path) == [str(job.id), str(job.id)]
