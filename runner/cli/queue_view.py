"""How queue commands print jobs for people: the ``status`` table and the ``show`` listing."""

from __future__ import annotations

from pathlib import Path

from runner.core.events import terminal_safe
from runner.core.present import duration, one_line, state_label
from runner.core.rundir import RunDir
from runner.store import Job, iso

_COLUMNS = ("ID", "NAME", "STATE", "STAGE", "PROGRESS", "LOSS", "AGE")


def progress_label(job: Job) -> str:
    """``step/max_steps (pct%)``, or ``-``."""
    p = job.progress
    if p.step is None:
        return "-"
    if not p.max_steps:
        return str(p.step)
    return f"{p.step}/{p.max_steps} ({100 * p.step // p.max_steps}%)"


def jobs_table(jobs: list[Job], now: float) -> str:
    """The ``tuneq status`` table."""
    rows = [_COLUMNS] + [
        (
            str(j.id),
            one_line(j.name),
            state_label(j.state, j.cancel_requested, j.reason),
            j.progress.stage or "-",
            progress_label(j),
            "-" if j.progress.loss is None else f"{j.progress.loss:.4f}",
            duration(now - j.created_at),
        )
        for j in jobs
    ]
    widths = [max(len(row[i]) for row in rows) for i in range(len(_COLUMNS))]
    lines = ("  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)).rstrip() for row in rows)
    return "\n".join(lines)


def job_details(job: Job) -> str:
    """The ``tuneq show`` listing."""
    run = RunDir(Path(job.run_dir))
    p = job.progress
    fields = [
        ("id", job.id),
        ("name", one_line(job.name)),
        ("state", state_label(job.state, job.cancel_requested, job.reason)),
        ("priority", job.priority),
        ("attempts", job.attempts),
        ("retries left", job.retries_left),
        ("stage", p.stage),
        ("progress", progress_label(job)),
        ("loss", None if p.loss is None else f"{p.loss:.4f}"),
        ("eta", None if p.eta_s is None else duration(p.eta_s)),
        ("reason", job.reason),
        ("created", iso(job.created_at)),
        ("started", iso(job.started_at)),
        ("finished", iso(job.finished_at)),
        ("worker", job.worker),
        ("node", job.node),
        ("submitted from", job.source_path),
        ("run dir", job.run_dir),
        ("events", run.events),
        ("log", run.log),
        ("spec hash", job.spec_hash[:16]),
    ]
    return terminal_safe(
        "\n".join(f"{name + ':':<16}{'-' if value is None else value}" for name, value in fields)
    )
