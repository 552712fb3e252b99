"""The records the store hands out: jobs, workers, progress. Plain frozen dataclasses, no database objects."""

from __future__ import annotations

import sqlite3
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from runner.core.jobstate import JobState

JSON_VERSION = 1  # the version of the --json shapes (docs/cli-json.md)
SQLITE_INT_MAX = 2**63 - 1  # SQLite's largest INTEGER: job ids and priorities stay within ±this


@dataclass(frozen=True)
class NewJob:
    """What ``submit`` stores: the validated spec text, never the user's live file."""

    name: str
    spec_text: str
    spec_hash: str
    source_path: str
    priority: int = 0
    retries: int = 1


@dataclass(frozen=True)
class Progress:
    """The latest stage and training progress mirrored from a running job's events."""

    stage: str | None = None
    step: int | None = None
    max_steps: int | None = None
    loss: float | None = None
    eta_s: float | None = None


@dataclass(frozen=True)
class Owner:
    """Who may write about a running job: the worker that runs it and the attempt it runs (the fence).

    Every write a worker makes about a job names its owner; the store refuses it (:class:`Fenced`) once
    the job has moved on to another worker or attempt.
    """

    worker: str
    attempt: int

    def __str__(self) -> str:
        return f"attempt {self.attempt} of worker {self.worker}"


@dataclass(frozen=True)
class Attempt:
    """One run of a job, as recorded: who ran it, how it ended, and when a late write of its worker was
    refused (``fenced_at``: the worker came back after the job had moved on)."""

    job_id: int
    attempt: int
    worker: str
    started_at: float
    ended_at: float | None
    state: JobState | None
    reason: str | None
    fenced_at: float | None

    @classmethod
    def from_row(cls, row: sqlite3.Row) -> Attempt:
        """Build from an ``attempts`` row."""
        return cls(
            job_id=row["job_id"],
            attempt=row["attempt"],
            worker=row["worker"],
            started_at=row["started_at"],
            ended_at=row["ended_at"],
            state=JobState(row["state"]) if row["state"] else None,
            reason=row["reason"],
            fenced_at=row["fenced_at"],
        )


@dataclass(frozen=True)
class Job:
    """One job as stored (the spec text is read separately with ``Store.spec_text``)."""

    id: int
    name: str
    state: JobState
    priority: int
    attempts: int
    retries_left: int
    spec_hash: str
    source_path: str
    run_dir: str
    created_at: float
    started_at: float | None
    finished_at: float | None
    progress: Progress
    reason: str | None
    cancel_requested: bool
    worker: str | None
    lease_until: float | None
    handle: str | None
    events_offset: int

    @classmethod
    def from_row(cls, row: sqlite3.Row) -> Job:
        """Build from a ``jobs`` row."""
        return cls(
            id=row["id"],
            name=row["name"],
            state=JobState(row["state"]),
            priority=row["priority"],
            attempts=row["attempts"],
            retries_left=row["retries_left"],
            spec_hash=row["spec_hash"],
            source_path=row["source_path"],
            run_dir=row["run_dir"],
            created_at=row["created_at"],
            started_at=row["started_at"],
            finished_at=row["finished_at"],
            progress=Progress(row["stage"], row["step"], row["max_steps"], row["loss"], row["eta_s"]),
            reason=row["reason"],
            cancel_requested=bool(row["cancel_requested"]),
            worker=row["worker"],
            lease_until=row["lease_until"],
            handle=row["handle"],
            events_offset=row["events_offset"],
        )

    @property
    def owner(self) -> Owner | None:
        """The worker and attempt a running job belongs to (``None`` unless it runs)."""
        if self.state is not JobState.RUNNING or self.worker is None:
            return None
        return Owner(self.worker, self.attempts)

    @property
    def node(self) -> str | None:
        """The machine of a cluster node the job runs (or last ran) on: a handle's ``@NODE`` part."""
        return self.handle.partition("@")[2] or None if self.handle else None

    def to_json(self) -> dict[str, Any]:
        """The stable ``--json`` shape of a job (docs/cli-json.md)."""
        p = self.progress
        return {
            "id": self.id,
            "name": self.name,
            "state": str(self.state),
            "priority": self.priority,
            "attempts": self.attempts,
            "retries_left": self.retries_left,
            "stage": p.stage,
            "step": p.step,
            "max_steps": p.max_steps,
            "loss": p.loss,
            "eta_s": p.eta_s,
            "reason": self.reason,
            "cancel_requested": self.cancel_requested,
            "created_at": iso(self.created_at),
            "started_at": iso(self.started_at),
            "finished_at": iso(self.finished_at),
            "run_dir": self.run_dir,
            "spec_hash": self.spec_hash,
            "source_path": self.source_path,
            "worker": self.worker,
            "node": self.node,
        }


@dataclass(frozen=True)
class WorkerInfo:
    """A registered worker: where it runs and when it last said it was alive."""

    id: str
    host: str
    pid: int
    started_at: float
    seen_at: float

    def to_json(self) -> dict[str, Any]:
        """The stable ``--json`` shape of a worker."""
        return {
            "id": self.id,
            "host": self.host,
            "pid": self.pid,
            "started_at": iso(self.started_at),
            "seen_at": iso(self.seen_at),
        }


def iso(ts: float | None) -> str | None:
    """Epoch seconds as an ISO-8601 UTC string (``None`` stays ``None``)."""
    if ts is None:
        return None
    return datetime.fromtimestamp(ts, UTC).isoformat(timespec="seconds").replace("+00:00", "Z")
