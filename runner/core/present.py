"""Words for jobs that the CLI and the TUI both print: a job's state label, counts and short ages."""

from __future__ import annotations

from runner.core.events import terminal_safe
from runner.core.jobstate import JobState


def state_label(state: JobState, cancel_requested: bool) -> str:
    """The state, or ``cancelling`` while a cancel request waits for the worker."""
    return "cancelling" if cancel_requested and state.is_active else str(state)


def stopped_ending(state: JobState, reason: str | None) -> str | None:
    """How a job the worker stopped ended, in words (``job cancelled by the user``, ``job interrupted: its
    worker was stopped``): the last line of its log, where the pipeline could only say "stopped by
    SIGTERM". ``None`` for other states (the pipeline's own ``job_end`` says those)."""
    if state not in (JobState.CANCELLED, JobState.INTERRUPTED):
        return None
    return f"job {reason}" if reason and reason.startswith(str(state)) else f"job {state}: {reason or '-'}"


def age(seconds: float) -> str:
    """A short duration: ``45s``, ``12m``, ``3h``, ``5d``."""
    seconds = max(0.0, seconds)
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size:
            return f"{int(seconds // size)}{unit}"
    return f"{int(seconds)}s"


def count(n: int, noun: str) -> str:
    """``1 job``, ``3 jobs``."""
    return f"{n} {noun}" + ("" if n == 1 else "s")


def one_line(text: str) -> str:
    """A user's string (a job name) for one line of a terminal or a table cell: :func:`terminal_safe`,
    with line breaks and tabs as spaces."""
    return terminal_safe(text).replace("\n", " ").replace("\t", " ")
