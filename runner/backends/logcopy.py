"""Copy a container's output into the run's ``log.txt``, secrets redacted, line by line as it comes.

A copy re-attached after a worker restart starts a second before the file's last write (engines keep log
times to the second) behind a ``[tuneq ...]`` marker line: some lines may repeat, none is lost.
"""

from __future__ import annotations

import threading
from collections.abc import Iterable
from pathlib import Path

import requests
from docker.errors import DockerException
from docker.models.containers import Container

from runner.core.events import now_iso
from runner.core.secrets import redact

MARKER = "[tuneq "  # starts the lines tuneq itself writes into log.txt


class LogCopy:
    """Appends one container's output to ``log``: ``follow()`` in a thread while it runs, or ``once()``."""

    def __init__(
        self, container: Container, log: Path, secrets: Iterable[str] = (), since: int | None = None
    ) -> None:
        self.container = container
        self.log = log
        self.secrets = list(secrets)
        self.since = since  # epoch seconds: for a re-attached container, continue about where the file ends
        self.broken = False  # the engine cut the stream before the output ended
        self._thread: threading.Thread | None = None

    @classmethod
    def reattached(cls, container: Container, log: Path) -> LogCopy:
        """For a container found after a worker restart: copy from a second before the file's last write."""
        since = int(log.stat().st_mtime) - 1 if log.exists() else None
        copy = cls(container, log, since=since)
        if since is not None:
            copy._write(
                f"{MARKER}{now_iso()}] worker re-attached; output since then follows "
                "(a few lines may repeat)\n"
            )
        return copy

    def follow(self) -> None:
        """Start copying in a daemon thread until the container's output ends (``log`` exists from now)."""
        self.log.touch()
        self._thread = threading.Thread(
            target=self._copy, args=(True,), daemon=True, name=f"logs-{self.container.name}"
        )
        self._thread.start()

    def once(self) -> None:
        """Copy what the (stopped) container wrote, then return."""
        self._copy(follow=False)

    @property
    def following(self) -> bool:
        """Whether the copy still follows (it ends when the container's output ends, i.e. when it exits)."""
        return self._thread is not None and self._thread.is_alive()

    def join(self, timeout_s: float = 10.0) -> None:
        """Wait for a following copy to reach the end of the output."""
        if self._thread is not None:
            self._thread.join(timeout_s)

    def _copy(self, follow: bool) -> None:
        pending = b""
        try:
            for chunk in self.container.logs(stream=True, follow=follow, since=self.since):
                pending += chunk
                cut = max(pending.rfind(b"\n"), pending.rfind(b"\r")) + 1
                if cut:
                    self._write(pending[:cut].decode("utf-8", "replace"))
                    pending = pending[cut:]
        except (DockerException, requests.RequestException):
            self.broken = True  # the backend's next poll re-attaches or reports the engine's error
        if pending:
            self._write(pending.decode("utf-8", "replace"))

    def _write(self, text: str) -> None:
        with self.log.open("a", encoding="utf-8") as out:
            out.write(redact(text, self.secrets))
