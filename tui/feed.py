"""A job's events folded into what the job screen shows: stage timeline, latest progress, loss series,
artifacts and the outcome. Plain Python: it runs in the polling thread, the screen gets frozen views."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field, replace

from runner.core.events import Artifact, Event, JobEnd, Metric, Progress, StageEnd, StageStart
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
    progress: Progress
    eval_loss: float | None
    train_series: Series
    eval_series: Series
    artifacts: tuple[Artifact, ...]
    end: JobEnd | None


@dataclass
class JobFeed:
    """Accumulates events (all attempts of a job) in the order they were written."""

    stages: dict[str, StageInfo] = field(default_factory=lambda: {n: StageInfo(n) for n in STAGE_NAMES})
    progress: Progress = field(default_factory=Progress)
    eval_loss: float | None = None
    train: tuple[list[float], list[float]] = field(default_factory=lambda: ([], []))
    evals: tuple[list[float], list[float]] = field(default_factory=lambda: ([], []))
    artifacts: dict[str, Artifact] = field(default_factory=dict)
    end: JobEnd | None = None

    def add(self, events: Iterable[Event]) -> None:
        """Fold new events in."""
        for event in events:
            stage = event.stage if event.stage in self.stages else None
            match event:
                case StageStart() if stage:
                    self._start(stage)
                case StageEnd() if stage:
                    status = "failed" if not event.ok else "reused" if event.reused else "done"
                    self.stages[stage] = StageInfo(stage, status, event.seconds)
                case Progress():
                    if stage and self.stages[stage].status == "running":
                        self.stages[stage] = replace(self.stages[stage], share=event.share)
                    if event.training:  # training's numbers (the export stages report bytes)
                        self.progress = event
                        _append(self.train, event.step, event.loss)
                case Metric() if event.eval_loss is not None:
                    self.eval_loss = event.eval_loss
                    _append(self.evals, event.step, event.eval_loss)
                case Artifact():
                    self.artifacts[event.path] = event
                case JobEnd():
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
            self.progress,
            self.eval_loss,
            _thin(self.train),
            _thin(self.evals),
            tuple(self.artifacts.values()),
            self.end,
        )


def _append(series: tuple[list[float], list[float]], x: float | None, y: float | None) -> None:
    if x is not None and y is not None:
        series[0].append(x)
        series[1].append(y)


def _thin(series: tuple[list[float], list[float]]) -> Series:
    xs, ys = series
    stride = max(1, -(-len(xs) // PLOT_POINTS))
    keep = list(range(0, len(xs), stride))
    if xs and keep[-1] != len(xs) - 1:
        keep.append(len(xs) - 1)
    return tuple(xs[i] for i in keep), tuple(ys[i] for i in keep)
