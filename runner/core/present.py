"""Words for jobs that the CLI and the TUI both print: a job's state label, counts and short ages."""

from __future__ import annotations

from runner.core.jobstate import JobState


def state_label(state: JobState, cancel_requested: bool) -> str:
    """The state, or ``cancelling`` while a cancel request waits for the worker."""
    return "cancelling" if cancel_requested and state.is_active else str(state)


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
