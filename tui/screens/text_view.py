"""Text to copy by hand: the fallback when the terminal does not take OSC 52 clipboard writes."""

from __future__ import annotations

from typing import ClassVar

from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Vertical
from textual.screen import ModalScreen
from textual.widgets import Static, TextArea


class TextScreen(ModalScreen[None]):
    """Read-only, selectable text; escape closes."""

    BINDINGS: ClassVar[list[BindingType]] = [Binding("escape", "close", "Close")]

    def __init__(self, title: str, text: str) -> None:
        super().__init__()
        self.title_text = title
        self.text = text

    def compose(self) -> ComposeResult:
        with Vertical(classes="dialog wide"):
            yield Static(Text(self.title_text), classes="question")
            yield TextArea(self.text, read_only=True, soft_wrap=True, id="copy-text")

    def action_close(self) -> None:
        self.dismiss()
