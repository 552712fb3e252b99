"""Small text renderings shared by the screens: state colours, progress bars, numbers."""

from __future__ import annotations

from rich.text import Text

from runner.core.present import state_label
from runner.store import Job

STATE_STYLES = {
    "queued": "yellow",
    "waiting": "yellow",
    "running": "bold cyan",
    "cancelling": "bold yellow",
    "succeeded": "bold green",
    "failed": "bold red",
    "cancelled": "dim",
    "interrupted": "magenta",
}


# a mark per state, so that states differ without colour too (NO_COLOR, a monochrome terminal)
STATE_MARKS = {
    "queued": "○",
    "waiting": "◔",
    "running": "●",
    "cancelling": "◌",
    "succeeded": "✓",
    "failed": "✗",
    "cancelled": "-",
    "interrupted": "!",
}


def state_text(job: Job) -> Text:
    """The job's state (or ``cancelling``, ``waiting``) after its mark, in its colour."""
    label = state_label(job.state, job.cancel_requested, job.reason)
    return Text(f"{STATE_MARKS.get(label, ' ')} {label}", style=STATE_STYLES.get(label, ""))


def progress_bar(step: int | None, max_steps: int | None, width: int = 6) -> Text:
    """``━━━─── 50%``, or ``-`` before the first step."""
    if step is None or not max_steps:
        return Text("-" if step is None else str(step), style="dim")
    fraction = min(1.0, max(0.0, step / max_steps))
    done = round(fraction * width)
    return Text.assemble(("━" * done, "cyan"), ("─" * (width - done), "dim"), f" {int(fraction * 100):>3}%")


def number(value: float | None, spec: str) -> str:
    """``format(value, spec)`` for a number, ``-`` for none."""
    return "-" if value is None else format(value, spec)
