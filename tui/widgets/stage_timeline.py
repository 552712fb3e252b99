"""The pipeline's stages, one per line, with a mark for each state and the time the stage took."""

from __future__ import annotations

from rich.text import Text
from textual.widgets import Static

from runner.core.present import duration
from tui.feed import StageInfo

MARKS = {
    "pending": ("○", "dim"),
    "running": ("●", "bold cyan"),
    "done": ("✓", "green"),
    "reused": ("↺", "green"),
    "failed": ("✗", "bold red"),
}


class StageTimeline(Static):
    """data → train → lora → merged → gguf → quantize → smoke."""

    def show(self, stages: tuple[StageInfo, ...]) -> None:
        """Render the stages."""
        text = Text()
        for stage in stages:
            mark, style = MARKS[stage.status]
            when = (
                "reused"
                if stage.status == "reused"
                else _running(stage)
                if stage.status == "running"
                else (duration(stage.seconds) if stage.seconds is not None else "")
            )
            text.append(f"{mark} ", style=style).append(f"{stage.name:<9}", style=style)
            text.append(f"{when:>8}\n", style="dim" if stage.status == "pending" else "")
        text.rstrip()
        self.update(text)


def _running(stage: StageInfo) -> str:
    return "…" if stage.share is None else f"{100 * stage.share:.0f}%"
