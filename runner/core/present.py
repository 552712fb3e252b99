"""Words that the CLI and the TUI both print: a job's state label, short ages, a failed file operation."""

from __future__ import annotations

import errno

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
