"""A job's events folded into what the job screen shows: stage timeline, latest progress, loss series,
artifacts and the outcome. Plain Python: it runs in the polling thread, the screen gets frozen views."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field, replace

from runner.core.events import Event, progress_share
from runner.core.stages import STAGE_NAMES

PLOT_POINTS = 400  # a series is thinned to about this many points before plotting

Series = tuple[tuple[float, ...], tuple[float, ...]]


@dataclass(frozen=True)
class StageInfo:
    """One stage of the timeline."""

    name: str
    status: str = "pending"  # pending | running | done | reused | failed
    seconds: float | None = None
    share: float | None = None  # how far a running stage is (0 to 1), when its progress events say


@dataclass(frozen=True)
class JobView:
    """A snapshot of a job's events for the widgets."""

    stages: tuple[StageInfo, ...]
    progress: Event
    eval_loss: float | None
    train_series: Series
    eval_series: Series
    artifacts: tuple[Event, ...]
    end: Event | None


@dataclass
class JobFeed:
    """Accumulates events (all attempts of a job) in the order they were written."""

    stages: dict[str, StageInfo] = field(default_factory=lambda: {n: StageInfo(n) for n in STAGE_NAMES})
    progress: Event = field(default_factory=dict)
    eval_loss: float | None = None
    train: tuple[list[float], list[float]] = field(default_factory=lambda: ([], []))
    evals: tuple[list[float], list[float]] = field(default_factory=lambda: ([], []))
    artifacts: dict[str, Event] = field(default_factory=dict)
    end: Event | None = None

    def add(self, events: Iterable[Event]) -> None:
        """Fold new events in."""
        for event in events:
            kind, stage = event.get("type"), event.get("stage")
            if kind == "stage_start" and stage in self.stages:
                self._start(stage)
            elif kind == "stage_end" and stage in self.stages:
                status = "failed" if not event.get("ok") else "reused" if event.get("reused") else "done"
                self.stages[stage] = StageInfo(stage, status, _float(event.get("seconds")))
            elif kind == "progress":
                if stage in self.stages and self.stages[stage].status == "running":
                    self.stages[stage] = replace(self.stages[stage], share=progress_share(event))
                if "step" in event:  # training's numbers (the export stages report bytes)
                    self.progress = event
                    _append(self.train, event.get("step"), event.get("loss"))
            elif kind == "metric" and "eval_loss" in event:
                self.eval_loss = _float(event["eval_loss"])
                _append(self.evals, event.get("step"), event["eval_loss"])
            elif kind == "artifact" and isinstance(event.get("path"), str):
                self.artifacts[event["path"]] = event
            elif kind == "job_end":
                self.end = event

    def _start(self, stage: str) -> None:
        """A stage starts: it runs, later stages wait again (a retry re-enters the timeline)."""
        later = STAGE_NAMES[STAGE_NAMES.index(stage) + 1 :]
        self.stages |= {stage: StageInfo(stage, "running")} | {n: StageInfo(n) for n in later}
        self.end = None

    def view(self) -> JobView:
        """A frozen snapshot with thinned loss series."""
        return JobView(
            tuple(self.stages.values()),
            dict(self.progress),
            self.eval_loss,
            _thin(self.train),
            _thin(self.evals),
            tuple(self.artifacts.values()),
            self.end,
        )


def _float(value: object) -> float | None:
    return float(value) if isinstance(value, int | float) and not isinstance(value, bool) else None


def _append(series: tuple[list[float], list[float]], x: object, y: object) -> None:
    fx, fy = _float(x), _float(y)
    if fx is not None and fy is not None:
        series[0].append(fx)
        series[1].append(fy)


def _thin(series: tuple[list[float], list[float]]) -> Series:
    xs, ys = series
    stride = max(1, -(-len(xs) // PLOT_POINTS))
    keep = list(range(0, len(xs), stride))
    if xs and keep[-1] != len(xs) - 1:
        keep.append(len(xs) - 1)
    return tuple(xs[i] for i in keep), tuple(ys[i] for i in keep)
