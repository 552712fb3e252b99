"""Following one attempt's events: the latest stage and progress, the last error and the ``job_end``."""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TypeVar

from runner.core.events import Event, EventTail
from runner.store import Progress


@dataclass
class Follower:
    """Folds the events a pipeline appends (from this attempt's offset on) into a summary."""

    tail: EventTail
    progress: Progress = field(default_factory=Progress)
    end: Event | None = None
    last_error: str | None = None

    @classmethod
    def at(cls, events: Path, offset: int) -> Follower:
        """Follow ``events`` from byte ``offset`` (where this attempt began)."""
        return cls(EventTail(events, offset))

    def read(self) -> None:
        """Take in the events appended since the last call."""
        for event in self.tail.read_new():
            self._fold(event)

    def _fold(self, event: Event) -> None:
        kind = event.get("type")
        if kind == "stage_start":  # the step count and ETA were the previous stage's
            self.progress = Progress(stage=event.get("stage"), loss=self.progress.loss)
        elif kind == "progress" and "step" not in event:  # an export stage's bytes: its ETA
            self.progress = replace(self.progress, eta_s=_number(event.get("eta_s"), float, None))
        elif kind == "progress":
            p = self.progress
            self.progress = Progress(
                stage=event.get("stage") or p.stage,
                step=_number(event.get("step"), int, p.step),
                max_steps=_number(event.get("max_steps"), int, p.max_steps),
                loss=_number(event.get("loss"), float, p.loss),
                eta_s=_number(event.get("eta_s"), float, p.eta_s),
            )
        elif kind == "error":
            self.last_error = str(event.get("cause") or "error")
        elif kind == "job_end":
            self.end = event


_N = TypeVar("_N", int, float)


def _number(value: object, kind: type[_N], previous: _N | None) -> _N | None:
    if isinstance(value, int | float) and not isinstance(value, bool):
        return kind(value)
    return previous
