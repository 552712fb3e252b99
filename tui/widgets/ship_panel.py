"""The tested GGUF and the commands that ship it, ready to copy; then the artifacts with sizes and sha256."""

from __future__ import annotations

from pathlib import Path

from rich.text import Text
from textual import on
from textual.app import ComposeResult
from textual.containers import VerticalScroll
from textual.widgets import OptionList, Static
from textual.widgets.option_list import Option

from runner.core.disksize import size_text
from runner.core.events import Artifact
from runner.core.tested import TestedGguf
from runner.ship.reach import SshHost
from tui.ship import ShipCommand, ship_commands


class ShipPanel(VerticalScroll):
    """The tested file and a list of commands (the highlighted one's text in full), then the run's files:
    what a user came for is on the first lines at 80x24."""

    def __init__(self, *, id: str | None = None) -> None:
        super().__init__(id=id)
        self.commands: list[ShipCommand] = []

    def compose(self) -> ComposeResult:
        yield Static(id="ship-tested")
        yield OptionList(id="ship-commands")
        yield Static(id="ship-preview")
        yield Static(id="artifact-list")

    def show(
        self,
        root: Path,
        items: list[Artifact],
        tested: TestedGguf | None,
        host: SshHost,
        modelfile: str | None,
        system: str | None = None,
    ) -> None:
        """Render the artifacts of the run directory ``root``; offer commands once the job tested a GGUF,
        fetching it from ``host`` (named with where that came from)."""
        head = Text()
        if tested:
            head.append(f"tested {tested.label}: ", style="bold green").append(str(root / tested.path))
            port = f" port {host.port}" if host.port else ""
            head.append(f"\nfetched from {host.user}@{host.host}{port} ({host.source})", style="dim")
        self.query_one("#ship-tested", Static).update(head)
        files = Text()
        for item in items:
            size = "-" if item.bytes is None else size_text(item.bytes)
            files.append(item.path, style="bold").append(f"  {size}\n")
            if item.sha256:
                files.append(f"  sha256 {item.sha256}\n", style="dim")
        self.query_one("#artifact-list", Static).update(files or Text("no artifacts yet", style="dim"))
        commands = (
            ship_commands(root / tested.path, tested.artifact_name, host, modelfile, system) if tested else []
        )
        if commands == self.commands:
            return
        self.commands = commands
        self.set_class(bool(commands), "-ready")
        options = self.query_one(OptionList)
        options.clear_options()
        options.add_options([Option(c.label, id=str(i)) for i, c in enumerate(commands)])
        if commands:
            options.highlighted = 0

    @property
    def selected(self) -> ShipCommand | None:
        """The highlighted command."""
        index = self.query_one(OptionList).highlighted
        return self.commands[index] if index is not None and index < len(self.commands) else None

    @on(OptionList.OptionHighlighted, "#ship-commands")
    def _preview(self) -> None:
        chosen = self.selected
        self.query_one("#ship-preview", Static).update(Text(chosen.text) if chosen else "")
