"""Following one attempt's events: the latest stage and progress, the last error and the ``job_end``."""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TypeVar

from runner.core.events import Error, Event, EventTail, JobEnd, Progress, StageStart
from runner.store import Progress as JobProgress


@dataclass
class Follower:
    """Folds the events a pipeline appends (from this attempt's offset on) into a summary."""

    tail: EventTail
    progress: JobProgress = field(default_factory=JobProgress)
    end: JobEnd | None = None
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
        match event:
            case StageStart():  # the step count and ETA were the previous stage's
                self.progress = JobProgress(stage=event.stage, loss=self.progress.loss)
            case Progress(training=False):  # an export stage's bytes: its ETA
                self.progress = replace(self.progress, eta_s=event.eta_s)
            case Progress():
                p = self.progress
                self.progress = JobProgress(
                    stage=event.stage or p.stage,
                    step=_or(event.step, p.step),
                    max_steps=_or(event.max_steps, p.max_steps),
                    loss=_or(event.loss, p.loss),
                    eta_s=_or(event.eta_s, p.eta_s),
                )
            case Error():
                self.last_error = event.cause or "error"
            case JobEnd():
                self.end = event


_T = TypeVar("_T")


def _or(value: _T | None, previous: _T | None) -> _T | None:
    return previous if value is None else value
