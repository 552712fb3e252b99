"""The store on real SQLite files: transitions, intents, claims, schema versions, broken databases."""

from __future__ import annotations

import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest

from runner import commands
from runner.core.jobstate import TRANSITIONS, IllegalTransition, JobState
from runner.store import (
    SCHEMA_VERSION,
    Fenced,
    JobNotFound,
    NewJob,
    Owner,
    Progress,
    SchemaTooNew,
    StateConflict,
    Store,
    StoreError,
    StoreLocked,
    WorkerInfo,
    WrongState,
)


def _new(store: Store, priority: int = 0, retries: int = 1) -> int:
    job = store.submit(
        NewJob("j", "name = 'j'", "h", "/x.toml", priority, retries),
        now=time.time(),
        prepare=lambda job_id: store.path.parent / "runs" / str(job_id),
    )
    return job.id


def _run(store: Store, job_id: int, state: JobState) -> None:
    """Put a queued job into ``state`` the legal way."""
    claimed = store.claim("w", now=time.time(), lease_s=60)
    assert claimed is not None and claimed.id == job_id
    if state is not JobState.RUNNING:
        store.transition(job_id, JobState.RUNNING, state, now=time.time(), reason="because")


def test_submit_stores_the_job(tmp_path: Path) -> None:
    with Store(tmp_path / "q.db") as store:
        job_id = _new(store, priority=2)
        job = store.get(job_id)
        assert (job.state, job.priority, job.attempts, job.retries_left) == (JobState.QUEUED, 2, 0, 1)
        assert job.run_dir == str(tmp_path / "runs" / str(job_id))
        assert store.spec_text(job_id) == "name = 'j'"
        assert [j.id for j in store.list_jobs([JobState.QUEUED])] == [job_id]
        assert store.list_jobs([JobState.RUNNING]) == []


def test_a_failing_prepare_queues_nothing(tmp_path: Path) -> None:
    def prepare(job_id: int) -> Path:
        raise OSError("disk full")

    with Store(tmp_path / "q.db") as store:
        with pytest.raises(OSError):
            store.submit(NewJob("j", "t", "h", "/x"), now=0, prepare=prepare)
        assert store.list_jobs() == []


def test_claims_take_highest_priority_then_oldest(tmp_path: Path) -> None:
    with Store(tmp_path / "q.db") as store:
        low, high1, high2, mid = _new(store, 0), _new(store, 5), _new(store, 5), _new(store, 1)
        assert store.next_queued() is not None and store.next_queued().id == high1  # type: ignore[union-attr]
        order = [store.claim("w", now=0, lease_s=1) for _ in range(5)]
        assert [j.id if j else None for j in order] == [high1, high2, mid, low, None]
        assert all(j.attempts == 1 and j.worker == "w" for j in order if j)


def test_every_transition_outside_the_table_raises(tmp_path: Path) -> None:
    with Store(tmp_path / "q.db") as store:
        job_id = _new(store)
        for dst in JobState:
            if dst not in TRANSITIONS[JobState.QUEUED]:
                with pytest.raises(IllegalTransition):
                    store.transition(job_id, JobState.QUEUED, dst, now=0)
        assert store.get(job_id).state is JobState.QUEUED


def test_transition_is_compare_and_set(tmp_path: Path) -> None:
    with Store(tmp_path / "q.db") as store:
        job_id = _new(store)
        _run(store, job_id, JobState.SUCCEEDED)
        with pytest.raises(StateConflict, match="found succeeded"):
            store.transition(job_id, JobState.RUNNING, JobState.FAILED, now=0)
        with pytest.raises(JobNotFound):
            store.transition(999, JobState.RUNNING, JobState.FAILED, now=0)
        assert store.get(job_id).state is JobState.SUCCEEDED


def test_cancel_queued_is_immediate_running_is_an_intent(tmp_path: Path) -> None:
    with Store(tmp_path / "q.db") as store:
        running, queued = _new(store, priority=1), _new(store)
        _run(store, running, JobState.RUNNING)
        assert store.request_cancel(queued, now=0).state is JobState.CANCELLED
        job = store.request_cancel(running, now=0)
        assert (job.state, job.cancel_requested) == (JobState.RUNNING, True)
        with pytest.raises(WrongState, match="only queued or running"):
            store.request_cancel(queued, now=0)
        with pytest.raises(JobNotFound, match="job 42 not found"):
            store.request_cancel(42, now=0)


@pytest.mark.parametrize("state", [JobState.FAILED, JobState.INTERRUPTED, JobState.CANCELLED])
def test_retry_requeues_ended_jobs(tmp_path: Path, state: JobState) -> None:
    with Store(tmp_path / "q.db") as store:
        job_id = _new(store)
        _run(store, job_id, state)
        job = store.retry(job_id, now=0)
        assert (job.state, job.finished_at, job.worker, job.retries_left) == (JobState.QUEUED, None, None, 1)
        assert store.claim("w2", now=0, lease_s=1).attempts == 2  # type: ignore[union-attr]


def test_retry_refuses_succeeded_and_active(tmp_path: Path) -> None:
    with Store(tmp_path / "q.db") as store:
        done, queued = _new(store, 1), _new(store)
        _run(store, done, JobState.SUCCEEDED)
        for job_id in (done, queued):
            with pytest.raises(WrongState, match="can be retried"):
                store.retry(job_id, now=0)


def test_automatic_requeue_spends_the_budget(tmp_path: Path) -> None:
    with Store(tmp_path / "q.db") as store:
        job_id = _new(store, retries=1)
        _run(store, job_id, JobState.INTERRUPTED)
        job = store.transition(job_id, JobState.INTERRUPTED, JobState.QUEUED, now=0, use_retry=True)
        assert (job.state, job.retries_left, job.reason) == (JobState.QUEUED, 0, "because")


def test_remove_only_finished(tmp_path: Path) -> None:
    with Store(tmp_path / "q.db") as store:
        done, queued = _new(store, 1), _new(store)
        _run(store, done, JobState.FAILED)
        with pytest.raises(WrongState, match="only finished jobs"):
            store.remove(queued)
        assert store.remove(done).id == done
        with pytest.raises(JobNotFound):
            store.get(done)
        assert _new(store) > queued  # ids are never reused


def test_priority_of_queued_or_retryable_jobs(tmp_path: Path) -> None:
    with Store(tmp_path / "q.db") as store:
        done, queued = _new(store, 1), _new(store)
        _run(store, done, JobState.SUCCEEDED)
        assert store.set_priority(queued, 9).priority == 9
        with pytest.raises(WrongState):
            store.set_priority(done, 9)


def test_progress_and_heartbeat_belong_to_the_claiming_worker(tmp_path: Path) -> None:
    with Store(tmp_path / "q.db") as store:
        job_id = _new(store)
        _run(store, job_id, JobState.RUNNING)
        with pytest.raises(Fenced):
            store.update_progress(job_id, Owner("someone-else", 1), Progress("train", 1, 2, 0.5, 3), now=0)
        assert store.get(job_id).progress == Progress()
        store.update_progress(job_id, Owner("w", 1), Progress("train", 1, 2, 0.5, 3), now=0)
        assert store.get(job_id).progress == Progress("train", 1, 2, 0.5, 3)
        info = WorkerInfo("w", "host", 1, 0, 0)
        assert store.heartbeat(info, now=100, lease_s=10) == {job_id: 1}
        assert store.get(job_id).lease_until == 110
        assert [w.id for w in store.workers()] == ["w"]
        store.unregister_worker("w")
        assert [w.id for w in store.workers()] == ["w"]  # kept while it holds a running job
        store.end_attempt(job_id, Owner("w", 1), JobState.SUCCEEDED, now=200, reason=None)
        store.unregister_worker("w")
        assert store.workers() == []


def test_every_write_of_a_stale_attempt_is_fenced_and_noted(tmp_path: Path) -> None:
    with Store(tmp_path / "q.db") as store:
        job_id = _new(store, retries=1)
        store.claim("a", now=10, lease_s=1)
        stale = Owner("a", 1)
        swept = store.end_attempt(job_id, stale, JobState.INTERRUPTED, now=20, reason="its worker stopped")
        assert swept.state is JobState.QUEUED  # a sweeper ended attempt 1 on a's behalf, and requeued it
        store.claim("b", now=21, lease_s=60)
        fresh = Owner("b", 2)
        for write in (
            lambda: store.end_attempt(job_id, stale, JobState.FAILED, now=30, reason="late"),
            lambda: store.update_progress(job_id, stale, Progress("train", 9), now=30),
            lambda: store.set_handle(job_id, stale, "123", now=30),
            lambda: store.end_attempt(job_id, Owner("b", 1), JobState.FAILED, now=30, reason="old attempt"),
        ):
            with pytest.raises(Fenced, match="runs attempt 2 of worker b"):
                write()
        assert not store.take_over(job_id, "c", previous=stale, now=30, lease_s=60)
        assert store.heartbeat(WorkerInfo("a", "h", 1, 0, 0), now=30, lease_s=60) == {}
        job = store.get(job_id)
        assert (job.state, job.worker, job.attempts, job.handle, job.progress) == (
            JobState.RUNNING,
            "b",
            2,
            None,
            Progress(),
        )
        store.end_attempt(job_id, fresh, JobState.SUCCEEDED, now=40, reason=None)
        first, second = store.attempts(job_id)
        assert (first.worker, first.state, first.reason, first.ended_at, first.fenced_at) == (
            "a",
            JobState.INTERRUPTED,
            "its worker stopped",
            20,
            30,
        )
        assert (second.worker, second.state, second.ended_at, second.fenced_at) == (
            "b",
            JobState.SUCCEEDED,
            40,
            None,
        )
        with pytest.raises(Fenced, match="it is succeeded"):
            store.end_attempt(job_id, fresh, JobState.FAILED, now=50, reason="twice")
        store.remove(job_id)
        assert store.attempts(job_id) == []


def test_a_new_database_is_wal_and_versioned(tmp_path: Path) -> None:
    Store(tmp_path / "q.db").close()
    conn = sqlite3.connect(tmp_path / "q.db")
    assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    assert conn.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION


def test_a_newer_schema_is_refused(tmp_path: Path) -> None:
    Store(tmp_path / "q.db").close()
    conn = sqlite3.connect(tmp_path / "q.db")
    conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION + 1}")
    conn.close()
    with pytest.raises(SchemaTooNew, match="upgrade tuneq"):
        Store(tmp_path / "q.db")


def test_a_corrupt_file_is_a_clear_error(tmp_path: Path) -> None:
    (tmp_path / "q.db").write_bytes(b"this is not sqlite at all" * 100)
    with pytest.raises(StoreError, match="corrupt or not a SQLite file"):
        Store(tmp_path / "q.db")


def test_a_locked_database_is_a_clear_error(tmp_path: Path) -> None:
    db = tmp_path / "q.db"
    Store(db).close()
    holder = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import sqlite3, sys, time\n"
            f"c = sqlite3.connect({str(db)!r}, isolation_level=None)\nc.execute('BEGIN EXCLUSIVE')\n"
            "print('held', flush=True)\ntime.sleep(30)",
        ],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "held"
        with Store(db, timeout=0.2) as store, pytest.raises(StoreLocked, match="locked by another process"):
            _new(store)
    finally:
        holder.kill()
        holder.wait()


def test_submit_validates_every_file_before_queueing(store: Store, make_job, tmp_path: Path) -> None:
    good = make_job("good")
    bad = tmp_path / "bad.toml"
    bad.write_text('name = "bad"\n[model]\nbase = "x"\n[data]\nsource = "missing.jsonl"\n')
    with pytest.raises(Exception, match=r"data file .*missing\.jsonl not found"):
        commands.submit(store, [good, bad])
    assert store.list_jobs() == []
    (job,) = commands.submit(store, [good], priority=3, name="renamed")
    assert (job.name, job.priority) == ("renamed", 3)
    assert (Path(job.run_dir) / "job.toml").read_text() == good.read_text()
    good.write_text("edited later")
    assert store.spec_text(job.id) != "edited later"
