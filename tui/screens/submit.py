"""Submit: pick a job file under the jobs folder, see ``tuneq validate``'s verdict, queue it on confirm.
An invalid file cannot be queued."""

from __future__ import annotations

from pathlib import Path
from typing import ClassVar

from rich.console import Group, RenderableType
from rich.table import Table
from rich.text import Text
from textual import on, work
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Horizontal, VerticalScroll
from textual.screen import Screen
from textual.widgets import Footer, Input, OptionList, Static
from textual.widgets.option_list import Option

from runner import commands
from runner.commands.validate import DataCheck, check_labels_apart, validate_file
from runner.core.paths import StateDirError
from runner.spec import LoadedSpec, SpecError
from runner.store import StoreError
from tui.context import TuiContext
from tui.messages import FilesListed, SampleRendered, Validated
from tui.screens.confirm import ConfirmScreen


def summary(loaded: LoadedSpec, data: DataCheck) -> Table:
    """:func:`runner.commands.validation_rows` as a two-column grid."""
    table = Table.grid(padding=(0, 1))
    table.add_column(style="dim")
    table.add_column()
    for key, value in commands.validation_rows(loaded, data):
        table.add_row(key, value)
    return table


def problems_text(message: Validated) -> Text:
    """Each problem with its line and key, and the hint."""
    text = Text()
    for problem in message.problems:
        where = f"line {problem.line}" if problem.line else Path(problem.file).name
        text.append(f"✗ {where}: ", style="bold red")
        text.append(f"{problem.key}: " if problem.key else "", style="bold")
        text.append(f"{problem.message}\n")
        if problem.hint:
            text.append(f"    hint: {problem.hint}\n", style="dim")
    return text


class SubmitScreen(Screen[None]):
    """Opened from the queue with ``n``."""

    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("escape", "back", "Back"),
        Binding("slash", "filter", "Filter"),
        Binding("e", "sample", "Render example"),
    ]

    def __init__(self, ctx: TuiContext) -> None:
        super().__init__()
        self.ctx = ctx
        self.files: list[Path] = []
        self.result: Validated | None = None

    def compose(self) -> ComposeResult:
        yield Static(Text.assemble(("Submit a job  ", "bold"), f"from {self.ctx.jobs_dir}"), classes="title")
        yield Input(placeholder="filter job files", id="file-filter")
        with Horizontal():
            yield OptionList(id="files")
            with VerticalScroll(id="validation"):
                yield Static(id="verdict")
                yield Static(id="sample")
        yield Footer()

    def on_mount(self) -> None:
        self.query_one("#files").focus()
        self._list_files()

    @work(thread=True)
    def _list_files(self) -> None:
        root = self.ctx.jobs_dir
        self.post_message(FilesListed(sorted(root.rglob("*.toml")) if root.is_dir() else []))

    @on(FilesListed)
    def _listed(self, message: FilesListed) -> None:
        self.files = message.files
        self._show_files()

    def _show_files(self) -> None:
        needle = self.query_one("#file-filter", Input).value.lower()
        options = self.query_one("#files", OptionList)
        options.clear_options()
        shown = [p for p in self.files if needle in str(p.relative_to(self.ctx.jobs_dir)).lower()]
        options.add_options([Option(Text(str(p.relative_to(self.ctx.jobs_dir))), id=str(p)) for p in shown])
        if shown:
            options.highlighted = 0
        else:
            self.result = None
            verdict = f"no job file matches “{needle}”" if needle else f"no job files in {self.ctx.jobs_dir}"
            self.query_one("#verdict", Static).update(Text(verdict, style="dim"))

    @on(Input.Changed, "#file-filter")
    def _filter(self) -> None:
        self._show_files()

    @on(Input.Submitted, "#file-filter")
    def _filter_done(self) -> None:
        self.query_one("#files").focus()

    @on(OptionList.OptionHighlighted, "#files")
    def _highlighted(self, event: OptionList.OptionHighlighted) -> None:
        path = Path(event.option.id or "")
        self.result = None
        self.query_one("#verdict", Static).update(Text(f"validating {path.name}…", style="dim"))
        self.query_one("#sample", Static).update("")
        self._validate(path)

    @work(thread=True, exclusive=True, group="validate")
    def _validate(self, path: Path) -> None:
        try:
            loaded, data = validate_file(path)
        except SpecError as exc:
            self.post_message(Validated(path, None, None, exc.problems))
        else:
            self.post_message(Validated(path, loaded, data, []))

    @on(Validated)
    def _validated(self, message: Validated) -> None:
        options = self.query_one("#files", OptionList)
        index = options.highlighted
        if index is None or options.get_option_at_index(index).id != str(message.path):
            return  # a stale answer for a file no longer highlighted
        self.result = message
        verdict: RenderableType
        if message.loaded and message.data:
            head = Text.assemble(("✓ valid", "bold green"), "  enter: queue it · e: render an example")
            verdict = Group(head, summary(message.loaded, message.data))
        else:
            head = Text("✗ invalid: fix these problems first (it cannot be queued)\n", style="bold red")
            verdict = Group(head, problems_text(message))
        self.query_one("#verdict", Static).update(verdict)

    @on(OptionList.OptionSelected, "#files")
    def _selected(self) -> None:
        result = self.result
        if result is None or result.loaded is None:
            self.notify("only a valid job file can be queued", severity="warning")
            return
        question = f"Queue {result.path.name} ({result.loaded.spec.name})?"

        def answered(yes: bool | None) -> None:
            if yes:
                self._submit(result.path)

        self.app.push_screen(ConfirmScreen(question), answered)

    @work(thread=True, group="submit")
    def _submit(self, path: Path) -> None:
        try:
            jobs = commands.submit(self.ctx.store, [path])
        except (SpecError, StoreError, StateDirError) as exc:
            self.app.call_from_thread(self.notify, str(exc), severity="error", timeout=10, markup=False)
            return
        self.app.call_from_thread(self._submitted, jobs[0].id, jobs[0].name)

    def _submitted(self, job_id: int, name: str) -> None:
        self.notify(f"job {job_id} queued: {name}", markup=False)
        self.dismiss()

    def action_back(self) -> None:
        self.dismiss()

    def action_filter(self) -> None:
        self.query_one("#file-filter").focus()

    def action_sample(self) -> None:
        if self.result and self.result.loaded:
            note = Text("rendering with the model's tokenizer…", style="dim")
            self.query_one("#sample", Static).update(note)
            self._render_sample(self.result.loaded)

    @work(thread=True, exclusive=True, group="sample")
    def _render_sample(self, loaded: LoadedSpec) -> None:
        try:
            labels = check_labels_apart(loaded.path, limit=200)
        except ValueError as exc:
            text = f"cannot render an example: {exc}"
        else:
            text = (
                f"{labels.sample}\n{labels.examples} examples tokenized: {labels.truncated} truncated, "
                f"{labels.no_target} with nothing to learn"
            )
        self.post_message(SampleRendered(loaded.path, text))

    @on(SampleRendered)
    def _sample(self, message: SampleRendered) -> None:
        if self.result and self.result.loaded and self.result.loaded.path == message.path:
            self.query_one("#sample", Static).update(Text(message.text))
