"""The latest training numbers: step, epoch, losses, learning rate, grad norm, throughput, memory, ETA."""

from __future__ import annotations

from rich.table import Table
from textual.widgets import Static

from runner.core.events import Progress
from runner.core.present import duration
from tui.format import number


class LiveStats(Static):
    """Two label/value pairs per line."""

    def show(self, progress: Progress, eval_loss: float | None) -> None:
        """Render the latest training ``progress`` event and eval loss."""
        step = f"{progress.step}/{progress.max_steps or '?'}" if progress.training else "-"
        pairs = [
            ("step", step),
            ("epoch", number(progress.epoch, ".2f")),
            ("loss", number(progress.loss, ".4f")),
            ("eval", number(eval_loss, ".4f")),
            ("lr", number(progress.lr, ".2e")),
            ("grad", number(progress.grad_norm, ".3f")),
            ("tok/s", number(progress.tokens_per_s, ".0f")),
            ("mem", f"{number(progress.mem_gib, '.1f')} GiB"),
            ("eta", duration(progress.eta_s) if progress.eta_s is not None else "-"),
        ]
        grid = Table.grid(padding=(0, 1))
        for _ in range(2):
            grid.add_column(style="dim")
            grid.add_column(min_width=9)
        for i in range(0, len(pairs), 2):
            row = pairs[i : i + 2]
            grid.add_row(*(cell for pair in row for cell in pair))
        self.update(grid)
