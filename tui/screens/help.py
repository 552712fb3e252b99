"""``?``: the keys of the screen underneath, and what the queue's states mean."""

from __future__ import annotations

from typing import ClassVar

from rich.table import Table
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import VerticalScroll
from textual.screen import ModalScreen
from textual.widgets import Static

STATES = (
    "queued: waiting for the worker · running · succeeded · failed: the pipeline failed (r retries) · "
    "cancelled · interrupted: the worker went away (requeued while retries last)"
)


class HelpScreen(ModalScreen[None]):
    """Lists ``(key, description)`` pairs; any of escape, q or ? closes it."""

    BINDINGS: ClassVar[list[BindingType]] = [Binding("escape,q,question_mark", "close", "Close")]

    def __init__(self, keys: list[tuple[str, str]]) -> None:
        super().__init__()
        self.keys = keys

    def compose(self) -> ComposeResult:
        table = Table.grid(padding=(0, 2))
        table.add_column(style="bold")
        table.add_column()
        for key, description in self.keys:
            table.add_row(key, description)
        with VerticalScroll(classes="dialog"):
            yield Static("Keys", classes="question")
            yield Static(table)
            yield Static(STATES, classes="help-states")

    def action_close(self) -> None:
        self.dismiss()
