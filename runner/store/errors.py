"""Everything the store raises; each message is one line a user can act on."""

from __future__ import annotations

from runner.core.jobstate import JobState
from runner.store.models import Owner


class StoreError(Exception):
    """The queue database cannot be used (corrupt, locked, too new, unwritable)."""


class StoreLocked(StoreError):
    """Another process held the database longer than the busy timeout."""


class StoreUnwritable(StoreError):
    """The database cannot be written: a read-only disk or file, or a full disk (nothing was changed)."""


class SchemaTooNew(StoreError):
    """The database was written by a newer tuneq than this one."""


class JobError(Exception):
    """A request about one job that cannot be honoured (unknown id, wrong state)."""


class JobNotFound(JobError):
    """No job has this id."""

    def __init__(self, job_id: int) -> None:
        self.job_id = job_id
        super().__init__(f"job {job_id} not found")


class WrongState(JobError):
    """The job's state does not allow the request."""

    def __init__(self, job_id: int, state: JobState, wanted: str) -> None:
        self.job_id = job_id
        self.state = state
        super().__init__(f"job {job_id} is {state}: {wanted}")


class StateConflict(RuntimeError):
    """A compare-and-set lost: the job was no longer in the expected state (another writer moved it)."""

    def __init__(self, job_id: int, expected: JobState, actual: JobState | None) -> None:
        self.job_id = job_id
        self.expected = expected
        self.actual = actual
        super().__init__(f"job {job_id}: expected state {expected}, found {actual or 'no job'}")


class Fenced(RuntimeError):
    """A worker's write about a job it no longer owns (its lease expired and the job moved on): refused.

    The worker that gets it must stop the pipeline of that attempt and forget the job.
    """

    def __init__(self, job_id: int, owner: Owner, now_held_by: str) -> None:
        self.job_id = job_id
        self.owner = owner
        super().__init__(f"job {job_id}: {owner} no longer owns it ({now_held_by}); its write was refused")
