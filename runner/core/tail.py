"""What a growing file gained since the last read, as complete lines (a torn last line waits for its end)."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path


def file_end(path: Path) -> int:
    """Where a growing file ends now, in bytes (0 while it does not exist): a tail started there reads only
    what comes next."""
    try:
        return path.stat().st_size
    except FileNotFoundError:
        return 0


@dataclass
class LineTail:
    """Reads a file from ``offset`` on; each call returns the complete lines appended since the last."""

    path: Path
    offset: int = 0
    _partial: bytes = field(default=b"", repr=False)

    def read_lines(self) -> list[bytes]:
        """New complete lines, without their ``\\n`` (none while the file does not exist)."""
        try:
            with self.path.open("rb") as handle:
                handle.seek(self.offset)
                chunk = handle.read()
        except FileNotFoundError:
            return []
        self.offset += len(chunk)
        lines = (self._partial + chunk).split(b"\n")
        self._partial = lines.pop()
        return lines
