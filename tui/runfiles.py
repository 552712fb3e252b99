"""Reading a run directory for the job screen: the log's new lines, ``report.json``, ``smoke.json`` and the
artifacts. Blocking file reads: call these from a polling thread."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from runner.core.events import Artifact, parse
from runner.core.rundir import RunDir
from runner.core.tail import LineTail

LOG_START_BYTES = 256 * 1024  # the first read of a log starts this far before its end


@dataclass
class LogTail:
    """New lines of a growing text file; the first read skips all but the last ``LOG_START_BYTES``."""

    path: Path
    _tail: LineTail | None = field(default=None, repr=False)

    def read_new(self) -> list[str]:
        """Complete lines appended since the last call."""
        skip_first = False
        if self._tail is None:
            try:
                start = max(0, self.path.stat().st_size - LOG_START_BYTES)
            except FileNotFoundError:
                return []
            self._tail, skip_first = LineTail(self.path, start), start > 0
        lines = self._tail.read_lines()
        if skip_first and lines:
            lines.pop(0)  # starts mid-line
        return [line.decode("utf-8", "replace").rstrip("\r") for line in lines]


@dataclass(frozen=True)
class RunFiles:
    """The run's summary files, ``None`` until written."""

    report: dict[str, Any] | None = None
    smoke: dict[str, Any] | None = None
    modelfile: str | None = None  # ship/Modelfile, with the GGUF's chat template, once the ship stage ran
    job_toml: str | None = None  # the job file the run directory runs (as submitted, or as retried)


def read_run_files(root: Path) -> RunFiles:
    """``report.json``, ``smoke.json``, ``ship/Modelfile`` and ``job.toml`` of a run directory (unreadable =
    absent)."""
    run = RunDir(root)
    return RunFiles(
        _read_json(run.report),
        _read_json(run.smoke),
        _read_text(run.ship_modelfile),
        _read_text(run.job_toml),
    )


def _read_text(path: Path) -> str | None:
    try:
        return path.read_text(encoding="utf-8")
    except (OSError, ValueError):
        return None


def _read_json(path: Path) -> dict[str, Any] | None:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def artifacts(report: dict[str, Any] | None, events: tuple[Artifact, ...]) -> list[Artifact]:
    """Artifacts by path: ``artifact`` events as they come, overridden by the final report's list (whose
    entries have an artifact event's fields)."""
    merged = {a.path: a for a in events}
    for entry in (report or {}).get("artifacts") or []:
        if isinstance(entry, dict) and isinstance(listed := parse({**entry, "type": "artifact"}), Artifact):
            merged[listed.path] = listed
    return list(merged.values())
