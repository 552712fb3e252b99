"""The queue as a table that updates in place: changed cells only, rebuilt only when rows move."""

from __future__ import annotations

from rich.console import RenderableType
from rich.text import Text
from textual.coordinate import Coordinate
from textual.widgets import DataTable

from runner.core.jobstate import JobState
from runner.core.present import duration, one_line
from runner.store import Job
from tui.format import number, progress_bar, state_text

COLUMNS = (
    ("id", "ID"),
    ("priority", "PRI"),
    ("name", "NAME"),
    ("state", "STATE"),
    ("stage", "STAGE"),
    ("progress", "PROGRESS"),
    ("loss", "LOSS"),
    ("eta", "ETA"),
    ("age", "AGE"),
)
Cells = tuple[RenderableType, ...]


def job_cells(job: Job, now: float) -> Cells:
    """One row: id, priority, name, coloured state, stage, progress bar, loss, ETA (while running), age;
    the name and the stage as plain text (a name such as ``[/]`` is no Rich markup)."""
    p = job.progress
    eta = duration(p.eta_s) if job.state is JobState.RUNNING and p.eta_s is not None else "-"
    return (
        Text(str(job.id), justify="right"),
        Text(str(job.priority), justify="right", style="" if job.priority else "dim"),
        Text(one_line(job.name)),
        state_text(job),
        Text(p.stage or "-"),
        progress_bar(p.step, p.max_steps),
        number(p.loss, ".3f"),
        eta,
        duration(now - job.created_at),
    )


class JobsTable(DataTable[RenderableType]):
    """Jobs keyed by id; the cursor stays on its job across updates."""

    def __init__(self, *, id: str | None = None) -> None:
        super().__init__(id=id, cursor_type="row", zebra_stripes=True)
        self._order: list[str] = []
        self._cells: dict[str, Cells] = {}

    def on_mount(self) -> None:
        for key, label in COLUMNS:
            self.add_column(label, key=key)

    @property
    def selected_id(self) -> int | None:
        """The id of the job under the cursor."""
        if not self.row_count:
            return None
        row_key, _ = self.coordinate_to_cell_key(Coordinate(self.cursor_row, 0))
        return int(row_key.value or 0)

    def show(self, jobs: list[Job], now: float) -> None:
        """Display ``jobs`` in this order."""
        rows = {str(job.id): job_cells(job, now) for job in jobs}
        order = list(rows)
        if order != self._order:
            self._rebuild(order, rows)
        else:
            for key, cells in rows.items():
                for (column, _), new, old in zip(COLUMNS, cells, self._cells[key], strict=True):
                    if new != old:
                        self.update_cell(key, column, new, update_width=True)
        self._cells = rows

    def _rebuild(self, order: list[str], rows: dict[str, Cells]) -> None:
        selected = self.selected_id
        self.clear()
        for key in order:
            self.add_row(*rows[key], key=key)
        self._order = order
        if selected is not None and str(selected) in rows:
            self.move_cursor(row=order.index(str(selected)), animate=False)
