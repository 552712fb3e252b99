"""How a job's run ends: the verdict from its exit and events, and the one function that records it.

Every ending — the pipeline exited, it was cancelled, its worker stopped or died — goes through
:func:`settle`. An ``interrupted`` job is requeued there while its retry budget lasts; a ``failed`` one
waits for ``tuneq retry`` (a failing pipeline usually fails again the same way).
"""

from __future__ import annotations

import logging
from datetime import UTC, datetime
from pathlib import Path

from runner.backends.base import Outcome
from runner.core.jobstate import JobState
from runner.core.present import stopped_ending
from runner.core.rundir import EXIT_BUSY, RunDir
from runner.store import Job, Owner, Store
from runner.worker import notify
from runner.worker.follow import Follower

log = logging.getLogger("tuneq.worker")
Verdict = tuple[JobState, str | None]


def reported(follower: Follower) -> Verdict | None:
    """What the attempt's ``job_end`` event says, if it came and was not a stop (the stopper decides)."""
    end = follower.end
    if end is None or end.stopped:
        return None
    if end.ok:
        return JobState.SUCCEEDED, None
    return JobState.FAILED, end.reason or follower.last_error or "the pipeline reported a failure"


def exit_verdict(outcome: Outcome, follower: Follower) -> Verdict:
    """The end of a pipeline that exited by itself: its ``job_end`` event, else its exit status; an
    ``interrupted`` outcome (its node was lost, or its files did not come back) whatever it reported, and
    so is a pipeline that found its run directory taken."""
    if outcome.interrupted:
        return JobState.INTERRUPTED, outcome.reason
    if outcome.exit_code == EXIT_BUSY:  # it wrote no event: another pipeline works in its run directory
        return JobState.INTERRUPTED, "its run directory is in use by another pipeline (see log.txt)"
    if (verdict := reported(follower)) is not None:
        return verdict
    if follower.end is not None and follower.end.stopped:
        return JobState.INTERRUPTED, "the pipeline was stopped by a signal from outside tuneq"
    if outcome.exit_code == 0:
        return JobState.FAILED, "the pipeline exited without a job_end event (see log.txt)"
    cause = f"{follower.last_error}; " if follower.last_error else ""
    how = outcome.reason or f"exit code {outcome.exit_code}"
    return JobState.FAILED, f"{cause}pipeline {how} (see log.txt)"


def stopped_verdict(job: Job, follower: Follower, why: str) -> Verdict:
    """The end of a pipeline the worker stopped: cancelled if the user asked, else interrupted."""
    if (verdict := reported(follower)) is not None:
        return verdict
    if job.cancel_requested:
        return JobState.CANCELLED, "cancelled by the user"
    return JobState.INTERRUPTED, why


def settle(store: Store, job_id: int, owner: Owner, verdict: Verdict, now: float) -> Job:
    """Record the end of ``owner``'s attempt (:class:`~runner.store.Fenced` if the job moved on); requeue an
    interrupted job while it has retries left (one transaction); send the job's notification (in the
    background) when it has ended."""
    state, reason = verdict
    ended = store.end_attempt(job_id, owner, state, now=now, reason=reason)
    log.info("job %d %s%s", job_id, state, f": {reason}" if reason else "")
    if ended.state is JobState.QUEUED:
        log.info("job %d requeued (%d automatic retries left)", job_id, ended.retries_left)
    if words := stopped_ending(state, reason):
        _end_log(ended, words + (" (queued again)" if ended.state is JobState.QUEUED else ""), now)
    notify.job_ended(store, ended)
    return ended


def _end_log(job: Job, words: str, now: float) -> None:
    """Append ``words`` to the run's ``log.txt``, as an event line would look."""
    stamp = datetime.fromtimestamp(now, UTC).strftime("%H:%M:%S")
    try:
        with RunDir(Path(job.run_dir)).log.open("a", encoding="utf-8") as out:
            out.write(f"{stamp} {'-':<9} {words}\n")
    except OSError as exc:
        log.warning("job %d: could not note its end in its log: %s", job.id, exc)
