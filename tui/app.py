"""The Textual app: the queue screen first; ``q`` quits and ``?`` shows the keys from anywhere."""

from __future__ import annotations

from pathlib import Path
from typing import ClassVar

from textual.app import App
from textual.binding import Binding, BindingType
from textual.screen import Screen

from runner.ship.reach import ship_host
from runner.store import Store
from tui.context import TuiContext
from tui.screens.help import HelpScreen
from tui.screens.queue import QueueScreen


class TuneqApp(App[None]):
    """``tuneq tui``."""

    CSS_PATH = "tuneq.tcss"
    TITLE = "tuneq"
    ENABLE_COMMAND_PALETTE = False
    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("q", "quit", "Quit"),
        Binding("question_mark", "help", "Help"),
    ]

    def __init__(self, ctx: TuiContext) -> None:
        super().__init__()
        self.ctx = ctx

    def get_default_screen(self) -> Screen[None]:
        return QueueScreen(self.ctx)

    def action_help(self) -> None:
        """Every key of the current screen and of the app, footer or not (Enter included); not Textual's
        built-in ones, nor the focused widget's cursor keys."""
        declared = [b for b in (*self.screen.BINDINGS, *self.BINDINGS) if isinstance(b, Binding)]
        keys = [
            (" ".join(self.get_key_display(Binding(k, b.action)) for k in b.key.split(",")), b.description)
            for b in declared
            if b.description
        ]
        self.push_screen(HelpScreen(keys))


def run(jobs_dir: Path) -> int:
    """Open the TUI on the state directory's store (``TUNEQ_HOME``); return an exit code.

    :class:`runner.ship.transfer.ShipError` (before anything is drawn) for an unusable ship host setting."""
    with Store() as store:
        TuneqApp(TuiContext(store, jobs_dir.resolve(), ship_host(store.path.parent))).run()
    return 0
