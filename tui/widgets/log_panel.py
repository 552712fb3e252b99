"""The job's log.txt: follows new lines, scrolls, and filters to the lines matching a search."""

from __future__ import annotations

from collections import deque
from typing import ClassVar

from textual import on
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Vertical
from textual.widgets import Input, Log

from runner.core.events import terminal_safe

KEEP_LINES = 5000


def last_redraw(line: str) -> str:
    """What a terminal leaves of a line that ``\r`` rewrote (tqdm's bars): its last non-empty state."""
    return next((part for part in reversed(line.split("\r")) if part.strip()), "")


class SearchInput(Input):
    """The search box; escape clears the search."""

    BINDINGS: ClassVar[list[BindingType]] = [Binding("escape", "clear", "Clear search")]

    def action_clear(self) -> None:
        self.value = ""
        self.screen.query_one("#log-view", Log).focus()


class LogPanel(Vertical):
    """A search box over a following log view."""

    def __init__(self, *, id: str | None = None) -> None:
        super().__init__(id=id)
        self._lines: deque[str] = deque(maxlen=KEEP_LINES)
        self._needle = ""

    def compose(self) -> ComposeResult:
        yield SearchInput(placeholder="search the log (enter: keep, escape: clear)", id="log-search")
        yield Log(max_lines=KEEP_LINES, auto_scroll=True, id="log-view")

    def append(self, lines: list[str]) -> None:
        """Add new lines (shown if they match the search), as a terminal shows them: a progress bar's
        redraws (``\r``) leave their last state only, and no escape sequence is kept."""
        lines = [terminal_safe(last_redraw(line)) for line in lines]
        self._lines.extend(lines)
        shown = [line for line in lines if self._matches(line)]
        if shown:
            self.query_one(Log).write_lines(shown)

    def open_search(self) -> None:
        """Show and focus the search box."""
        self.query_one(SearchInput).focus()

    def _matches(self, line: str) -> bool:
        return self._needle in line.lower()

    @on(Input.Changed, "#log-search")
    def _search(self, event: Input.Changed) -> None:
        self._needle = event.value.lower()
        self.set_class(bool(self._needle), "-searching")
        log = self.query_one(Log)
        log.clear()
        log.write_lines([line for line in self._lines if self._matches(line)])
        event.stop()

    @on(Input.Submitted, "#log-search")
    def _keep(self, event: Input.Submitted) -> None:
        self.query_one(Log).focus()
        event.stop()
