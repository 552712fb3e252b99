"""What every stage receives: the spec, the run directory, the event writer and an in-memory handoff."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from runner.events import EventWriter
from runner.pipeline.stopping import StopSignal
from runner.rundir import RunDir
from runner.spec.model import JobSpec


class StageFailed(Exception):
    """A stage failed for a reason the user can act on (``cause`` and ``hint`` go into the error event)."""

    def __init__(self, cause: str, hint: str | None = None) -> None:
        super().__init__(cause)
        self.cause = cause
        self.hint = hint


@dataclass
class StageContext:
    """One pipeline run's shared context."""

    spec: JobSpec
    run: RunDir
    info: dict[str, Any]
    events: EventWriter
    stage: str = ""
    stage_key: str = ""  # hash of the spec sections the current stage depends on
    handoff: dict[str, Any] = field(default_factory=dict)  # live objects passed between stages in one process
    stop: StopSignal = field(default_factory=StopSignal)  # SIGTERM/SIGINT (runner.pipeline.stopping)

    def emit(self, type_: Any, **fields: Any) -> None:
        """Emit an event attributed to the current stage."""
        self.events.emit(type_, self.stage, **fields)

    def log(self, message: str) -> None:
        """Emit a ``log`` event."""
        self.emit("log", message=message)

    @property
    def data_path(self) -> Path | None:
        """The copy of the job's local data file inside the run directory, if the source is local."""
        rel = self.info.get("data_path")
        return self.run.root / rel if rel else None
