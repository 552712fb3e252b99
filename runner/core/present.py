"""Words that the CLI and the TUI both print: a job's state label, counts, durations, a failed file
operation."""

from __future__ import annotations

import errno

from runner.core.events import terminal_safe
from runner.core.jobstate import JobState

WAITING_FOR_GPU = "waiting for a GPU"  # how a queued job's reason begins while no GPU is free for it


def state_label(state: JobState, cancel_requested: bool, reason: str | None = None) -> str:
    """The state; ``cancelling`` while a cancel request waits for the worker, ``waiting`` for a queued job
    that is next but finds no free GPU (its reason says so; it spends no retry meanwhile)."""
    if cancel_requested and state.is_active:
        return "cancelling"
    if state is JobState.QUEUED and reason and reason.startswith(WAITING_FOR_GPU):
        return "waiting"
    return str(state)


def stopped_ending(state: JobState, reason: str | None) -> str | None:
    """How a job the worker stopped ended, in words (``job cancelled by the user``, ``job interrupted: its
    worker was stopped``): the last line of its log, where the pipeline could only say "stopped by
    SIGTERM". ``None`` for other states (the pipeline's own ``job_end`` says those)."""
    if state not in (JobState.CANCELLED, JobState.INTERRUPTED):
        return None
    return f"job {reason}" if reason and reason.startswith(str(state)) else f"job {state}: {reason or '-'}"


def duration(seconds: float | None) -> str:
    """A duration or an age, in its two largest units: ``42s``, ``3m05s``, ``2h07m``, ``5d03h``; ``-`` for
    ``None``. The one way tuneq writes one (CLI, TUI, notifications)."""
    if seconds is None:
        return "-"
    total = max(0, round(seconds))
    for big, big_s, small, small_s in (("d", 86400, "h", 3600), ("h", 3600, "m", 60), ("m", 60, "s", 1)):
        if total >= big_s:
            return f"{total // big_s}{big}{total % big_s // small_s:02d}{small}"
    return f"{total}s"


def count(n: int, noun: str) -> str:
    """``1 job``, ``3 jobs``."""
    return f"{n} {noun}" + ("" if n == 1 else "s")


def one_line(text: str) -> str:
    """A user's string (a job name) for one line of a terminal or a table cell: :func:`terminal_safe`,
    with line breaks and tabs as spaces."""
    return terminal_safe(text).replace("\n", " ").replace("\t", " ")


_OS_FIXES = {
    errno.ENOSPC: "free space on that disk (`df -h`), then try again",
    errno.EDQUOT: "free space within your disk quota, then try again",
    errno.EROFS: "that filesystem is read-only: remount it read-write, or set TUNEQ_HOME to a writable directory",
    errno.EACCES: "fix its permissions, or set TUNEQ_HOME to a directory you can write",
    errno.EPERM: "fix its permissions, or set TUNEQ_HOME to a directory you can write",
    errno.ELOOP: "the path is a loop of symbolic links: point it at a real file",
}


def os_failure(exc: OSError) -> str:
    """One line for a failed file operation: the file, the cause and, where known, the fix."""
    where = f"{exc.filename}: " if exc.filename else ""
    fix = _OS_FIXES.get(exc.errno or 0)
    return f"{where}{exc.strerror or exc}" + (f"; {fix}" if fix else "")
