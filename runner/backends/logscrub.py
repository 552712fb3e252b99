"""The local backend's log writer: a pipeline's stdout and stderr reach ``log.txt`` through a pipe and a
small relay process that scrubs secrets (:func:`runner.core.secrets.redact`) line by line.

The relay runs in its own session: no terminal signal reaches it and it outlives a worker restart. It
ends when the last process holding the pipe's write end (the pipeline and anything it started) has
exited. It never stops reading before that, even when ``log.txt`` cannot be written (a full disk): a
pipeline must not die of a broken pipe because its log could not keep up.
"""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
from collections.abc import Mapping
from pathlib import Path

from runner.core.secrets import redact

_CHUNK = 64 * 1024
_LONGEST_LINE = 1024 * 1024  # a longer line without a line break is written in pieces, cut at a space
_DRAIN_S = 2.0  # how long the backend waits for the relay to write a finished pipeline's last output


def start_relay(log: Path, env: Mapping[str, str]) -> tuple[subprocess.Popen[bytes], int]:
    """Start a relay appending to ``log``; return it and the pipe's write end, which the caller passes to
    the pipeline as stdout/stderr and then closes."""
    log.touch()  # the file exists from the start, as for any backend
    read_end, write_end = os.pipe()
    try:
        relay = subprocess.Popen(
            [sys.executable, "-m", "runner.backends.logscrub", str(log)],
            stdin=read_end,
            stdout=subprocess.DEVNULL,
            env=dict(env),
            start_new_session=True,
        )
    except BaseException:
        os.close(write_end)
        raise
    finally:
        os.close(read_end)
    return relay, write_end


def drain(relay: subprocess.Popen[bytes] | None) -> None:
    """Wait briefly for a relay whose pipeline has ended (processes the pipeline left behind may still
    hold the pipe; then the relay keeps copying their output on its own)."""
    if relay is not None:
        with contextlib.suppress(subprocess.TimeoutExpired):
            relay.wait(_DRAIN_S)


def copy_redacted(source: int, log: Path) -> None:
    """Append everything read from the file descriptor ``source`` to ``log``, secrets redacted, each
    line as soon as it ends (``\\n`` or ``\\r``, so progress bars show live)."""
    pending = b""
    with _Appender(log) as out:
        while chunk := os.read(source, _CHUNK):
            pending += chunk
            cut = max(pending.rfind(b"\n"), pending.rfind(b"\r")) + 1
            if not cut and len(pending) > _LONGEST_LINE:
                cut = pending.rfind(b" ") + 1 or len(pending)
            if cut:
                out.write(_scrub(pending[:cut]))
                pending = pending[cut:]
        if pending:
            out.write(_scrub(pending))


def _scrub(data: bytes) -> bytes:
    return redact(data.decode("utf-8", "surrogateescape")).encode("utf-8", "surrogateescape")


class _Appender:
    """Appends to a file, reopening it after a failed write; what cannot be written is dropped."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._fd: int | None = None

    def write(self, data: bytes) -> None:
        try:
            if self._fd is None:
                self._fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
            view = memoryview(data)
            while view:
                view = view[os.write(self._fd, view) :]
        except OSError:
            self.close()

    def close(self) -> None:
        if self._fd is not None:
            with contextlib.suppress(OSError):
                os.close(self._fd)
            self._fd = None

    def __enter__(self) -> _Appender:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


if __name__ == "__main__":
    copy_redacted(sys.stdin.fileno(), Path(sys.argv[1]))
