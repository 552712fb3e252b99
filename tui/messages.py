"""Messages from the polling and validation threads to the screens."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from textual.message import Message

from runner.commands.validate import DataCheck
from runner.spec import LoadedSpec, Problem
from runner.store import Job
from tui.feed import JobView
from tui.runfiles import RunFiles


@dataclass
class JobsPolled(Message):
    """The queue as read from the store."""

    jobs: list[Job]
    worker_alive: bool
    now: float


@dataclass
class JobPolled(Message):
    """What changed for one job; ``None`` fields did not change."""

    job: Job | None = None
    view: JobView | None = None
    log_lines: list[str] | None = None
    files: RunFiles | None = None


@dataclass
class StoreFailed(Message):
    """The store could not be read (locked, corrupt, gone)."""

    error: str


@dataclass
class FilesListed(Message):
    """The job files found under a folder (the jobs folder, or one typed in the submit screen's box)."""

    root: Path
    files: list[Path]


@dataclass
class Validated(Message):
    """``tuneq validate``'s result for one file: a spec and data check, or the problems."""

    path: Path
    loaded: LoadedSpec | None
    data: DataCheck | None
    problems: list[Problem]


@dataclass
class SampleRendered(Message):
    """One training example rendered with the model's tokenizer, or why it could not be."""

    path: Path
    text: str
