"""The latest training numbers: step, epoch, losses, learning rate, grad norm, throughput, memory, ETA."""

from __future__ import annotations

from rich.table import Table
from textual.widgets import Static

from runner.core.events import Event
from runner.core.present import duration
from tui.format import number


class LiveStats(Static):
    """Two label/value pairs per line."""

    def show(self, progress: Event, eval_loss: float | None) -> None:
        """Render the latest ``progress`` event and eval loss."""
        step = f"{progress['step']}/{progress.get('max_steps', '?')}" if "step" in progress else "-"
        pairs = [
            ("step", step),
            ("epoch", number(progress.get("epoch"), ".2f")),
            ("loss", number(progress.get("loss"), ".4f")),
            ("eval", number(eval_loss, ".4f")),
            ("lr", number(progress.get("lr"), ".2e")),
            ("grad", number(progress.get("grad_norm"), ".3f")),
            ("tok/s", number(progress.get("tokens_per_s"), ".0f")),
            ("mem", f"{number(progress.get('mem_gib'), '.1f')} GiB"),
            ("eta", duration(progress.get("eta_s")) if "eta_s" in progress else "-"),
        ]
        grid = Table.grid(padding=(0, 1))
        for _ in range(2):
            grid.add_column(style="dim")
            grid.add_column(min_width=9)
        for i in range(0, len(pairs), 2):
            row = pairs[i : i + 2]
            grid.add_row(*(cell for pair in row for cell in pair))
        self.update(grid)
