"""A job's lifecycle: the state enum and the one table of allowed transitions.

```
queued ──claim──▶ running ──▶ succeeded | failed | cancelled | interrupted
  │                                        │         │            │
  └──cancel──▶ cancelled          retry ◀──┴─────────┴────────────┘ (back to queued)
```
``interrupted`` means the job's worker went away (killed, rebooted, stopped) while it ran; an interrupted
job is requeued automatically while its retry budget (``[run] retries``) lasts (an attempt that never
started for want of a free GPU is requeued without spending it). ``failed`` means the pipeline itself
failed: it is final until ``tuneq retry``. The store's ``transition`` is the only writer
of a job's state and checks every change against :data:`TRANSITIONS`.
"""

from __future__ import annotations

from enum import StrEnum


class JobState(StrEnum):
    """Where a job is in its life; the values are what the store holds."""

    QUEUED = "queued"
    RUNNING = "running"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    CANCELLED = "cancelled"
    INTERRUPTED = "interrupted"

    @property
    def is_active(self) -> bool:
        """Queued or running: the job has not ended yet."""
        return self in (JobState.QUEUED, JobState.RUNNING)

    @property
    def is_finished(self) -> bool:
        """The job ended (it may still be retried)."""
        return not self.is_active

    @property
    def is_retryable(self) -> bool:
        """``tuneq retry`` may requeue it."""
        return JobState.QUEUED in TRANSITIONS[self] and self is not JobState.QUEUED


TRANSITIONS: dict[JobState, frozenset[JobState]] = {
    JobState.QUEUED: frozenset({JobState.RUNNING, JobState.CANCELLED}),
    JobState.RUNNING: frozenset(
        {JobState.SUCCEEDED, JobState.FAILED, JobState.CANCELLED, JobState.INTERRUPTED}
    ),
    JobState.SUCCEEDED: frozenset(),
    JobState.FAILED: frozenset({JobState.QUEUED}),
    JobState.CANCELLED: frozenset({JobState.QUEUED}),
    JobState.INTERRUPTED: frozenset({JobState.QUEUED}),
}


class IllegalTransition(RuntimeError):
    """A state change the table does not allow: a bug in the caller, never a user error."""


def check_transition(src: JobState, dst: JobState) -> None:
    """Raise :class:`IllegalTransition` unless ``src → dst`` is in :data:`TRANSITIONS`."""
    if dst not in TRANSITIONS[src]:
        raise IllegalTransition(f"illegal job state transition {src} -> {dst}")
