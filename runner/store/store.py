"""The queue database: one SQLite file in WAL mode, the only state shared by CLI, worker and TUI.

Every write is one short ``BEGIN IMMEDIATE`` transaction, never held while waiting on a process.
:meth:`Store.transition` (and the intents built on it) is the only code that writes a job's state: a
compare-and-set checked against :data:`runner.core.jobstate.TRANSITIONS`. Every write a worker makes
about a running job (its handle, progress, end) is fenced by its :class:`Owner` — the worker and the
attempt — as lease-based queues do: once the job moved on (its lease expired, a sweeper ended the attempt,
another attempt runs) the write is refused with :class:`Fenced`, noted on the attempt's row. Any
``sqlite3`` failure leaves as a :class:`StoreError` with a one-line message (corrupt file, locked, newer
schema; a read-only or full disk as :class:`StoreUnwritable`). A database that cannot be written is opened
read-only, so it can still be read (:mod:`runner.store.connect`).
"""

from __future__ import annotations

import os
import sqlite3
import threading
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, TypeVar

from runner.core.jobstate import JobState, check_transition
from runner.core.paths import state_dir
from runner.store.connect import connect_read_only, writable_place
from runner.store.errors import (
    Fenced,
    JobNotFound,
    StateConflict,
    StoreError,
    StoreLocked,
    StoreUnwritable,
    WrongState,
)
from runner.store.models import SQLITE_INT_MAX, Attempt, Job, NewJob, Owner, Progress, WorkerInfo
from runner.store.schema import SCHEMA_VERSION, check_not_newer, migrate, user_version

DB_NAME = "queue.db"
_JOB_COLUMNS = (
    "id, name, state, priority, attempts, retries_left, spec_hash, source_path, run_dir, created_at, "
    "started_at, finished_at, stage, step, max_steps, loss, eta_s, reason, cancel_requested, worker, "
    "lease_until, handle, events_offset"
)
_NEXT_QUEUED = "SELECT id FROM jobs WHERE state = 'queued' ORDER BY priority DESC, id LIMIT 1"
_T = TypeVar("_T")


def default_path() -> Path:
    """``<state dir>/queue.db`` (``TUNEQ_HOME`` / XDG rules in :mod:`runner.core.paths`)."""
    return state_dir() / DB_NAME


class Store:
    """A connection to the queue database; safe to share between threads of one process."""

    def __init__(self, path: str | Path | None = None, *, timeout: float = 5.0) -> None:
        self.path = Path(path) if path is not None else default_path()
        self.timeout = timeout
        self._lock = threading.RLock()
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self.read_only = not writable_place(self.path)
            if self.read_only and not self.path.exists():
                raise StoreUnwritable(
                    f"the queue database {self.path} cannot be created: its directory is read-only or not "
                    "yours; remount it read-write, fix its permissions, or set TUNEQ_HOME to a writable directory"
                )
            if self.read_only:
                self._conn = connect_read_only(self.path, timeout)
            else:
                self._conn = sqlite3.connect(
                    self.path, timeout=timeout, isolation_level=None, check_same_thread=False
                )
        except (OSError, sqlite3.Error) as exc:
            raise StoreError(f"cannot open the queue database {self.path}: {exc}") from None
        self._conn.row_factory = sqlite3.Row
        try:
            self._open_schema()
        except BaseException:
            self._conn.close()
            raise

    def _open_schema(self) -> None:
        with self._errors():
            version = user_version(self._conn)
            check_not_newer(version, str(self.path))
            if version < SCHEMA_VERSION and self.read_only:
                raise StoreUnwritable(_read_only(self.path, "it needs its tables created or upgraded"))
            if version < SCHEMA_VERSION:
                self._conn.execute("PRAGMA journal_mode = WAL")
        if version < SCHEMA_VERSION:
            with self._tx() as conn:
                migrate(conn, str(self.path))

    def check_writable(self) -> None:
        """Raise :class:`StoreUnwritable` unless this connection can write (a worker checks before it
        starts: a read-only queue would fail every turn of its loop)."""
        if self.read_only:
            raise StoreUnwritable(_read_only(self.path, "a worker cannot record anything in it"))
        with self._tx() as conn:
            conn.execute(f"PRAGMA user_version = {user_version(conn)}")  # writes page 1, changing nothing

    def close(self) -> None:
        """Close the connection."""
        self._conn.close()

    def __enter__(self) -> Store:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # --- plumbing ----------------------------------------------------------------------------------

    @contextmanager
    def _errors(self) -> Iterator[None]:
        try:
            yield
        except sqlite3.Error as exc:
            raise _store_error(exc, self.path, self.timeout) from None

    @contextmanager
    def _tx(self) -> Iterator[sqlite3.Connection]:
        """One write transaction, taken before reading (``BEGIN IMMEDIATE``)."""
        with self._lock, self._errors():
            self._conn.execute("BEGIN IMMEDIATE")
            try:
                yield self._conn
            except BaseException:
                self._conn.execute("ROLLBACK")
                raise
            self._conn.execute("COMMIT")

    def _query(self, sql: str, args: Iterable[Any] = ()) -> list[sqlite3.Row]:
        with self._lock, self._errors():
            return self._conn.execute(sql, tuple(args)).fetchall()

    @staticmethod
    def _load(conn: sqlite3.Connection, job_id: int) -> Job:
        row = conn.execute(f"SELECT {_JOB_COLUMNS} FROM jobs WHERE id = ?", (job_id,)).fetchone()
        if row is None:
            raise JobNotFound(job_id)
        return Job.from_row(row)

    # --- reading -----------------------------------------------------------------------------------

    def get(self, job_id: int) -> Job:
        """One job; :class:`JobNotFound` if there is none."""
        with self._lock, self._errors():
            return self._load(self._conn, job_id)

    def list_jobs(self, states: Iterable[JobState] | None = None) -> list[Job]:
        """Jobs in id order, optionally only those in ``states``."""
        sql = f"SELECT {_JOB_COLUMNS} FROM jobs"
        wanted = [str(s) for s in states] if states is not None else None
        if wanted is not None:
            sql += f" WHERE state IN ({', '.join('?' * len(wanted))})"
        return [Job.from_row(row) for row in self._query(sql + " ORDER BY id", wanted or ())]

    def next_queued(self) -> Job | None:
        """The job a worker would claim next: highest priority, then oldest (lowest id)."""
        rows = self._query(_NEXT_QUEUED)
        return self.get(rows[0]["id"]) if rows else None

    def attempts(self, job_id: int) -> list[Attempt]:
        """A job's recorded attempts, oldest first."""
        rows = self._query("SELECT * FROM attempts WHERE job_id = ? ORDER BY attempt", (job_id,))
        return [Attempt.from_row(row) for row in rows]

    def spec_text(self, job_id: int) -> str:
        """The job file's text exactly as submitted."""
        rows = self._query("SELECT spec_text FROM jobs WHERE id = ?", (job_id,))
        if not rows:
            raise JobNotFound(job_id)
        text: str = rows[0]["spec_text"]
        return text

    def workers(self) -> list[WorkerInfo]:
        """Registered workers (a dead one stays listed until a sweep removes it)."""
        rows = self._query("SELECT id, host, pid, started_at, seen_at FROM workers ORDER BY started_at")
        return [WorkerInfo(r["id"], r["host"], r["pid"], r["started_at"], r["seen_at"]) for r in rows]

    def data_version(self) -> int:
        """A number that changes whenever another connection commits (``PRAGMA data_version``): a cheap
        "did anything change?" for pollers such as the TUI."""
        version: int = self._query("PRAGMA data_version")[0][0]
        return version

    # --- state changes -----------------------------------------------------------------------------

    def transition(
        self,
        job_id: int,
        src: JobState,
        dst: JobState,
        *,
        now: float,
        reason: str | None = None,
        use_retry: bool = False,
    ) -> Job:
        """Move a job from ``src`` to ``dst`` if it is still in ``src`` (compare-and-set).

        Raises :class:`IllegalTransition` for a change the table forbids and :class:`StateConflict` if
        the job moved meanwhile. ``use_retry`` spends one of the job's automatic retries (requeue only).
        """
        with self._tx() as conn:
            return self._set_state(conn, job_id, src, dst, now=now, reason=reason, use_retry=use_retry)

    def _set_state(
        self,
        conn: sqlite3.Connection,
        job_id: int,
        src: JobState,
        dst: JobState,
        *,
        now: float,
        reason: str | None = None,
        use_retry: bool = False,
        worker: str | None = None,
        lease_until: float | None = None,
    ) -> Job:
        check_transition(src, dst)
        sets: dict[str, Any] = {"state": str(dst)}
        extra = ""
        if dst is JobState.RUNNING:
            sets |= {
                "started_at": now,
                "finished_at": None,
                "worker": worker,
                "lease_until": lease_until,
                "handle": None,
                "events_offset": -1,  # not launched yet: no event in the file belongs to this attempt
                "reason": None,
                "cancel_requested": 0,
            }
            extra = ", attempts = attempts + 1"
        elif dst is JobState.QUEUED:
            sets |= {
                "finished_at": None,
                "worker": None,
                "lease_until": None,
                "handle": None,
                "cancel_requested": 0,
            }
            extra = ", retries_left = retries_left - 1" if use_retry else ""
        else:
            sets |= {"finished_at": now, "reason": reason, "lease_until": None}
        assignments = ", ".join(f"{column} = ?" for column in sets) + extra
        cursor = conn.execute(
            f"UPDATE jobs SET {assignments} WHERE id = ? AND state = ?", (*sets.values(), job_id, str(src))
        )
        if cursor.rowcount == 0:
            row = conn.execute("SELECT state FROM jobs WHERE id = ?", (job_id,)).fetchone()
            if row is None:
                raise JobNotFound(job_id)
            raise StateConflict(job_id, src, JobState(row["state"]))
        job = self._load(conn, job_id)
        if dst is JobState.RUNNING:
            conn.execute(
                "INSERT OR REPLACE INTO attempts (job_id, attempt, worker, started_at) VALUES (?, ?, ?, ?)",
                (job_id, job.attempts, worker or "", now),
            )
        elif src is JobState.RUNNING:
            conn.execute(
                "UPDATE attempts SET ended_at = ?, state = ?, reason = ? WHERE job_id = ? AND attempt = ?",
                (now, str(dst), reason, job_id, job.attempts),
            )
        return job

    def _as_owner(
        self, job_id: int, owner: Owner, now: float, write: Callable[[sqlite3.Connection], _T]
    ) -> _T:
        """Run ``write`` in one transaction if ``owner`` still owns the running job; else note the refusal
        on its attempt's row (``fenced_at``) and raise :class:`Fenced`."""
        with self._tx() as conn:
            row = conn.execute("SELECT state, worker, attempts FROM jobs WHERE id = ?", (job_id,)).fetchone()
            if row is None:
                raise JobNotFound(job_id)
            if row["state"] == str(JobState.RUNNING) and (row["worker"], row["attempts"]) == (
                owner.worker,
                owner.attempt,
            ):
                return write(conn)
            conn.execute(
                "UPDATE attempts SET fenced_at = COALESCE(fenced_at, ?) "
                "WHERE job_id = ? AND attempt = ? AND worker = ?",
                (now, job_id, owner.attempt, owner.worker),
            )
        held = (
            f"it runs attempt {row['attempts']} of worker {row['worker']}"
            if row["state"] == str(JobState.RUNNING)
            else f"it is {row['state']}"
        )
        raise Fenced(job_id, owner, held)

    # --- intents (CLI and TUI) ---------------------------------------------------------------------

    def submit(self, new: NewJob, *, now: float, prepare: Callable[[int], Path]) -> Job:
        """Queue a job. ``prepare(job_id)`` gives the job its run directory and returns its path, inside
        the same transaction: if it raises, nothing is queued. A crash before the commit may leave that
        directory behind, and the id is then used again: ``prepare`` must never adopt an existing one."""
        with self._tx() as conn:
            cursor = conn.execute(
                "INSERT INTO jobs (name, spec_text, spec_hash, source_path, priority, state, retries_left, "
                "created_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                (
                    new.name,
                    new.spec_text,
                    new.spec_hash,
                    new.source_path,
                    new.priority,
                    str(JobState.QUEUED),
                    new.retries,
                    now,
                ),
            )
            job_id = int(cursor.lastrowid or 0)
            conn.execute("UPDATE jobs SET run_dir = ? WHERE id = ?", (str(prepare(job_id)), job_id))
            return self._load(conn, job_id)

    def request_cancel(self, job_id: int, *, now: float) -> Job:
        """Cancel a queued job at once; ask the worker to stop a running one (it marks it cancelled)."""
        with self._tx() as conn:
            job = self._load(conn, job_id)
            if job.state is JobState.QUEUED:
                return self._set_state(
                    conn,
                    job_id,
                    JobState.QUEUED,
                    JobState.CANCELLED,
                    now=now,
                    reason="cancelled before it started",
                )
            if job.state is not JobState.RUNNING:
                raise WrongState(job_id, job.state, "only queued or running jobs can be cancelled")
            conn.execute("UPDATE jobs SET cancel_requested = 1 WHERE id = ?", (job_id,))
            return self._load(conn, job_id)

    def retry(self, job_id: int, *, now: float, edited: NewJob | None = None) -> Job:
        """Requeue a failed, interrupted or cancelled job; its run directory (and checkpoints) is reused.
        With ``edited``, the job's name, spec text and source become that job file's."""
        with self._tx() as conn:
            job = self._load(conn, job_id)
            if not job.state.is_retryable:
                raise WrongState(
                    job_id, job.state, "only failed, interrupted or cancelled jobs can be retried"
                )
            if edited is not None:
                conn.execute(
                    "UPDATE jobs SET name = ?, spec_text = ?, spec_hash = ?, source_path = ? WHERE id = ?",
                    (edited.name, edited.spec_text, edited.spec_hash, edited.source_path, job_id),
                )
            return self._set_state(conn, job_id, job.state, JobState.QUEUED, now=now)

    def set_priority(self, job_id: int, priority: int) -> Job:
        """Change the priority of a job that may still run (queued or retryable)."""
        return self._update_priority(job_id, "?", priority)

    def bump_priority(self, job_id: int, delta: int) -> Job:
        """Add ``delta`` to a job's priority in one statement, so that concurrent bumps all count (the
        result stays within ±:data:`SQLITE_INT_MAX`)."""
        return self._update_priority(
            job_id, f"MAX(-{SQLITE_INT_MAX}, MIN({SQLITE_INT_MAX}, priority + ?))", delta
        )

    def _update_priority(self, job_id: int, expression: str, value: int) -> Job:
        with self._tx() as conn:
            job = self._load(conn, job_id)
            if not (job.state is JobState.QUEUED or job.state.is_retryable):
                raise WrongState(job_id, job.state, "only queued or retryable jobs have a priority to change")
            conn.execute(f"UPDATE jobs SET priority = {expression} WHERE id = ?", (value, job_id))
            return self._load(conn, job_id)

    def remove(self, job_id: int) -> Job:
        """Delete a finished job's record and return it (its run directory is the caller's to delete)."""
        with self._tx() as conn:
            job = self._load(conn, job_id)
            if not job.state.is_finished:
                raise WrongState(job_id, job.state, "only finished jobs can be removed (cancel it first)")
            conn.execute("DELETE FROM jobs WHERE id = ? AND state = ?", (job_id, str(job.state)))
            conn.execute("DELETE FROM attempts WHERE job_id = ?", (job_id,))
            return job

    # --- the worker's side -------------------------------------------------------------------------

    def claim(
        self, worker: str, *, now: float, lease_s: float, events_offset: Callable[[Job], int] | None = None
    ) -> Job | None:
        """Atomically take the next queued job for ``worker`` (two workers never get the same one).

        ``events_offset(job)`` says where this attempt's events begin, stored in the same transaction;
        without it the offset is -1 (no event belongs to the attempt yet).
        """
        with self._tx() as conn:
            row = conn.execute(_NEXT_QUEUED).fetchone()
            if row is None:
                return None
            job = self._set_state(
                conn,
                row["id"],
                JobState.QUEUED,
                JobState.RUNNING,
                now=now,
                worker=worker,
                lease_until=now + lease_s,
            )
            if events_offset is not None:
                conn.execute("UPDATE jobs SET events_offset = ? WHERE id = ?", (events_offset(job), job.id))
            return self._load(conn, job.id)

    def take_over(self, job_id: int, worker: str, *, previous: Owner, now: float, lease_s: float) -> bool:
        """Make ``worker`` the owner of a running job whose owner ``previous`` is gone, the attempt going
        on (a re-attach); False if the job is no longer running under ``previous``."""
        with self._tx() as conn:
            cur = conn.execute(
                "UPDATE jobs SET worker = ?, lease_until = ? "
                "WHERE id = ? AND worker = ? AND attempts = ? AND state = 'running'",
                (worker, now + lease_s, job_id, previous.worker, previous.attempt),
            )
            if cur.rowcount != 1:
                return False
            conn.execute(
                "UPDATE attempts SET worker = ? WHERE job_id = ? AND attempt = ?",
                (worker, job_id, previous.attempt),
            )
            return True

    def end_attempt(
        self, job_id: int, owner: Owner, state: JobState, *, now: float, reason: str | None
    ) -> Job:
        """Record the end of ``owner``'s attempt as ``state`` (:class:`Fenced` if the job moved on); an
        interrupted job with retries left is requeued in the same transaction (a crash cannot leave it
        interrupted and forgotten). ``state`` ``queued`` means the attempt never started (no machine had
        room for it): the attempt is recorded interrupted with ``reason`` and the job queued again, waiting
        for capacity, without spending a retry."""

        def end(conn: sqlite3.Connection) -> Job:
            if state is JobState.QUEUED:
                self._set_state(conn, job_id, JobState.RUNNING, JobState.INTERRUPTED, now=now, reason=reason)
                return self._set_state(conn, job_id, JobState.INTERRUPTED, JobState.QUEUED, now=now)
            ended = self._set_state(conn, job_id, JobState.RUNNING, state, now=now, reason=reason)
            if state is JobState.INTERRUPTED and ended.retries_left > 0:
                ended = self._set_state(
                    conn, job_id, JobState.INTERRUPTED, JobState.QUEUED, now=now, use_retry=True
                )
            return ended

        return self._as_owner(job_id, owner, now, end)

    def note_waiting(self, job_id: int, reason: str) -> None:
        """Say why a queued job does not start yet (``status`` and the TUI show it; the claim clears it)."""
        with self._tx() as conn:
            conn.execute("UPDATE jobs SET reason = ? WHERE id = ? AND state = 'queued'", (reason, job_id))

    def set_handle(self, job_id: int, owner: Owner, handle: str, *, now: float) -> None:
        """Record the backend handle of the attempt's pipeline (a hint for recovery)."""
        self._as_owner(
            job_id,
            owner,
            now,
            lambda conn: conn.execute("UPDATE jobs SET handle = ? WHERE id = ?", (handle, job_id)),
        )

    def update_progress(self, job_id: int, owner: Owner, progress: Progress, *, now: float) -> None:
        """Mirror the latest stage and progress of the attempt ``owner`` runs."""
        self._as_owner(
            job_id,
            owner,
            now,
            lambda conn: conn.execute(
                "UPDATE jobs SET stage = ?, step = ?, max_steps = ?, loss = ?, eta_s = ? WHERE id = ?",
                (progress.stage, progress.step, progress.max_steps, progress.loss, progress.eta_s, job_id),
            ),
        )

    def heartbeat(self, info: WorkerInfo, *, now: float, lease_s: float) -> dict[int, int]:
        """Say the worker is alive and extend its jobs' leases; return the jobs it still holds, each with
        the attempt it holds (a job it runs under an older attempt is no longer its)."""
        with self._tx() as conn:
            conn.execute(
                "INSERT OR REPLACE INTO workers (id, host, pid, started_at, seen_at) VALUES (?, ?, ?, ?, ?)",
                (info.id, info.host, info.pid, info.started_at, now),
            )
            conn.execute(
                "UPDATE jobs SET lease_until = ? WHERE worker = ? AND state = 'running'",
                (now + lease_s, info.id),
            )
            rows = conn.execute(
                "SELECT id, attempts FROM jobs WHERE worker = ? AND state = 'running'", (info.id,)
            )
            return {row["id"]: row["attempts"] for row in rows}

    def unregister_worker(self, worker: str) -> None:
        """Forget a worker (on a clean exit, or when a sweep finds it dead) that holds no running job: until
        its jobs are recovered its row tells a sweeper its host and pid, so that their pipelines are stopped
        (a job of an unknown worker counts as remote, its pipeline out of reach)."""
        with self._tx() as conn:
            conn.execute(
                "DELETE FROM workers WHERE id = ? "
                "AND NOT EXISTS (SELECT 1 FROM jobs WHERE worker = ? AND state = 'running')",
                (worker, worker),
            )


def _disk_full(path: Path) -> bool:
    """Whether the disk of ``path`` has (nearly) no space left: SQLite reports a full disk as an I/O error
    when it cannot even map its shared-memory file."""
    try:
        found = os.statvfs(path.parent)
    except OSError:
        return False
    return found.f_bavail * found.f_frsize < 64 * 1024


def _read_only(path: Path, why: str) -> str:
    return (
        f"the queue database {path} is read-only ({why}): `tuneq status`, `show`, `log` and `backup` still "
        "read it; to change it, make it writable (remount the disk read-write, fix its permissions) or "
        "restore a `tuneq backup` copy into a writable TUNEQ_HOME"
    )


def _store_error(exc: sqlite3.Error, path: Path, timeout: float) -> StoreError:
    text = str(exc)
    if "locked" in text or "busy" in text:
        return StoreLocked(
            f"the queue database {path} is locked by another process (waited {timeout:g}s): "
            "try again, or find the process holding it with `fuser` or `lsof`"
        )
    code = getattr(exc, "sqlite_errorcode", 0) & 0xFF
    if code == sqlite3.SQLITE_READONLY:
        return StoreUnwritable(_read_only(path, text))
    if code == sqlite3.SQLITE_FULL or (code == sqlite3.SQLITE_IOERR and _disk_full(path)):
        return StoreUnwritable(
            f"no space left for the queue database {path} ({text}): nothing was changed; free space on "
            f"its disk (`df -h {path.parent}`), then try again"
        )
    if isinstance(exc, sqlite3.DatabaseError) and (
        "not a database" in text or "malformed" in text or "disk image" in text
    ):
        return StoreError(
            f"the queue database {path} is corrupt or not a SQLite file ({text}): "
            "move it aside (tuneq then starts an empty queue) or restore a backup"
        )
    return StoreError(f"the queue database {path} cannot be used: {text}")
