"""``<state dir>/worker.pid``: the pid of the state directory's worker, locked (``flock``) while it runs.

The lock, not the file's existence, says whether a worker runs: a killed worker's lock is released by
the kernel, so a stale file never blocks the next start.
"""

from __future__ import annotations

import fcntl
import os
from pathlib import Path

PID_FILE = "worker.pid"


class PidLock:
    """The exclusive lock one worker per state directory holds."""

    def __init__(self, directory: Path) -> None:
        self.path = directory / PID_FILE
        self._fd: int | None = None

    def acquire(self) -> bool:
        """Take the lock and write our pid; ``False`` if another worker holds it."""
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            return False
        os.ftruncate(fd, 0)
        os.write(fd, f"{os.getpid()}\n".encode())
        self._fd = fd
        return True

    def release(self) -> None:
        """Empty the file and drop the lock."""
        if self._fd is not None:
            os.ftruncate(self._fd, 0)
            os.close(self._fd)
            self._fd = None

    def holder(self) -> int | None:
        """The pid of the worker holding the lock, or ``None`` if no worker runs."""
        try:
            fd = os.open(self.path, os.O_RDONLY)
        except FileNotFoundError:
            return None
        try:
            fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
        except BlockingIOError:
            text = os.read(fd, 32).decode(errors="replace").strip()
            return int(text) if text.isdigit() else None
        finally:
            os.close(fd)
        return None
