"""What every stage receives: the spec, the run directory, the event writer, the earlier stages' results and
the live objects they leave for later ones."""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from runner.core.events import Event, EventWriter, Log
from runner.core.rundir import RunDir
from runner.pipeline.stopping import StopSignal
from runner.spec.model import JobSpec


class StageFailed(Exception):
    """A stage failed for a reason the user can act on (``cause`` and ``hint`` go into the error event)."""

    def __init__(self, cause: str, hint: str | None = None) -> None:
        super().__init__(cause)
        self.cause = cause
        self.hint = hint


@dataclass
class Handoff:
    """Live objects a stage leaves for a later one in the same process (never written anywhere)."""

    tokenizer: Any = None  # the job's tokenizer: loaded by the data stage, used by train and merged
    model: Any = None  # the trained PEFT model: left by train for merged, which drops it before converting


@dataclass
class StageContext:
    """One pipeline run's shared context."""

    spec: JobSpec
    run: RunDir
    info: dict[str, Any]
    events: EventWriter
    stage: str = ""
    stage_key: str = ""  # hash of the spec sections the current stage depends on
    results: dict[str, dict[str, Any]] = field(default_factory=dict)  # each finished stage's result, by name
    handoff: Handoff = field(default_factory=Handoff)
    stop: StopSignal = field(default_factory=StopSignal)  # SIGTERM/SIGINT (runner.pipeline.stopping)

    def emit(self, event: Event) -> None:
        """Emit an event attributed to the current stage."""
        self.events.emit(replace(event, stage=self.stage))

    def log(self, message: str) -> None:
        """Emit a ``log`` event."""
        self.emit(Log(message=message))

    def gguf_file(self, quant: str) -> Path:
        """The job's GGUF in ``quant`` (``f16``, ``q4_k_m``, ...) in the run directory."""
        return self.run.quant_gguf(self.spec.artifact_name, quant)

    @property
    def data_path(self) -> Path | None:
        """The copy of the job's local data file inside the run directory, if the source is local."""
        rel = self.info.get("data_path")
        return self.run.root / rel if rel else None
