"""One job: stage timeline, live numbers and loss plot; its log; smoke answers; artifacts and commands to
ship the tested GGUF. A polling thread tails new event and log lines and re-reads the summary files only
when an event says they changed."""

from __future__ import annotations

from pathlib import Path
from typing import ClassVar

from rich.text import Text
from textual import on, work
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Horizontal, Vertical
from textual.screen import Screen
from textual.widgets import Footer, Static, TabbedContent, TabPane
from textual.worker import get_current_worker

from runner.core.events import Event, EventTail, JobEnd, StageEnd, terminal_safe
from runner.core.jobstate import JobState
from runner.core.present import one_line, state_label
from runner.core.rundir import RunDir
from runner.core.tested import tested_gguf
from runner.spec import JobSpec, SpecError, parse_spec
from runner.store import Job, JobError, StoreError
from tui.context import TuiContext
from tui.feed import JobFeed, JobView
from tui.format import STATE_STYLES
from tui.messages import JobPolled, StoreFailed
from tui.pulse import Pulse
from tui.runfiles import LogTail, RunFiles, artifacts, read_run_files
from tui.screens.text_view import TextScreen
from tui.widgets.chat_panel import ChatPanel
from tui.widgets.live_stats import LiveStats
from tui.widgets.log_panel import LogPanel
from tui.widgets.loss_plot import LossPlot
from tui.widgets.ship_panel import ShipPanel
from tui.widgets.smoke_panel import SmokePanel
from tui.widgets.stage_timeline import StageTimeline

TABS = ("overview", "log", "smoke", "ship", "chat")
_FILE_STAGES = {"smoke", "ship"}


def rewrites_files(events: list[Event]) -> bool:
    """Whether new events say that report.json, smoke.json or ship/Modelfile may have been (re)written."""
    return any(isinstance(e, JobEnd) or (isinstance(e, StageEnd) and e.stage in _FILE_STAGES) for e in events)


class JobScreen(Screen[None]):
    """Opened from the queue with enter."""

    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("escape,backspace", "back", "Back"),
        # the tabs are on screen: their keys are in the help (?), not the footer, which then fits 80 columns
        *(
            Binding(str(i), f"tab('{tab}')", f"{tab.title()} tab", show=False)
            for i, tab in enumerate(TABS, 1)
        ),
        Binding("slash", "search", "Search"),
        Binding("y", "copy_path", "Copy GGUF path"),
        Binding("c", "copy", "Copy command"),
        Binding("v", "view", "View command"),
    ]

    def __init__(self, ctx: TuiContext, job_id: int) -> None:
        super().__init__()
        self.ctx = ctx
        self.job_id = job_id
        self.job: Job | None = None
        self.view: JobView | None = None
        self.files = RunFiles()
        self._parsed: tuple[str, JobSpec] | None = None
        self.pulse = Pulse(ctx.poll_s)

    def compose(self) -> ComposeResult:
        yield Static(f"job {self.job_id}", id="job-title", classes="title")
        yield Static(id="tested-path")
        with TabbedContent(id="tabs"):
            with TabPane("Overview", id="overview"), Horizontal():
                with Vertical(id="left"):
                    yield StageTimeline(id="stages")
                    yield LiveStats(id="stats")
                yield LossPlot(id="plot")
            with TabPane("Log", id="log"):
                yield LogPanel(id="log-panel")
            with TabPane("Smoke", id="smoke"):
                yield SmokePanel(id="smoke-panel")
            with TabPane("Ship", id="ship"):
                yield ShipPanel(id="ship-panel")
            with TabPane("Chat", id="chat"):
                yield ChatPanel(id="chat-panel")
        yield Footer()

    def on_mount(self) -> None:
        self.query_one("#stages", StageTimeline).border_title = "stages"
        self.query_one("#stats", LiveStats).border_title = "training"
        self._show_view(JobFeed().view())
        self._poll()

    @work(thread=True, exclusive=True, group="job-poll")
    def _poll(self) -> None:
        worker = get_current_worker()
        feed, version, fresh = JobFeed(), None, True
        tails: tuple[RunDir, EventTail, LogTail] | None = None
        while not worker.is_cancelled:
            try:
                current = self.ctx.store.data_version()
                job = self.ctx.store.get(self.job_id) if current != version else None
            except (StoreError, JobError) as exc:
                self.post_message(StoreFailed(str(exc)))
                return
            version = current
            if tails is None and job is not None:
                run = RunDir(Path(job.run_dir))
                tails = (run, EventTail(run.events), LogTail(run.log))
            if tails is not None:
                run, event_tail, log_tail = tails
                events, lines = event_tail.read_new(), log_tail.read_new()
                feed.add(events)
                files = read_run_files(run.root) if fresh or rewrites_files(events) else None
                fresh = False
                if job or events or lines or files:
                    self.post_message(JobPolled(job, feed.view() if events else None, lines or None, files))
            self.pulse.wait()

    @on(JobPolled)
    def _polled(self, message: JobPolled) -> None:
        if message.job:
            self.job = message.job
            self._show_title()
        if message.view:
            self._show_view(message.view)
        if message.log_lines:
            self.query_one(LogPanel).append(message.log_lines)
        if message.files:
            self.files = message.files
            self.query_one(SmokePanel).show(message.files.smoke)
        self._show_artifacts()

    def _show_view(self, view: JobView) -> None:
        self.view = view
        self.query_one(StageTimeline).show(view.stages)
        self.query_one(LiveStats).show(view.progress, view.eval_loss)
        self.query_one(LossPlot).show(view.train_series, view.eval_series)

    @on(StoreFailed)
    def _failed(self, message: StoreFailed) -> None:
        self.notify(message.error, title="queue database", severity="error", timeout=10, markup=False)

    def _show_title(self) -> None:
        job = self.job
        assert job is not None
        state = state_label(job.state, job.cancel_requested, job.reason)
        # Gaps end the bold runs: a bold run drawn wider than its cells (SVG viewers) then covers no text.
        title = Text.assemble(
            (f"job {job.id} {one_line(job.name)}  ", "bold"),
            (f"{state}  ", STATE_STYLES.get(state, "")),
            f"attempt {job.attempts}",
        )
        if job.node:  # a cluster node (docs/cluster.md)
            title.append(f"  on {terminal_safe(job.node)}")
        if job.state is not JobState.SUCCEEDED and job.reason:
            title.append(f"  {terminal_safe(job.reason)}", style="red")
        self.query_one("#job-title", Static).update(title)

    def _show_artifacts(self) -> None:
        if self.job is None:
            return
        root = Path(self.job.run_dir)
        items = artifacts(self.files.report, self.view.artifacts if self.view else ())
        tested = tested_gguf(self.view.end if self.view else None)
        if tested:
            path = Text.assemble((f"{tested.label} ", "green"), str(root / tested.path))
            self.query_one("#tested-path", Static).update(path)
        self.query_one("#tested-path").set_class(tested is not None, "-shown")
        spec = self._spec()
        self.query_one(ShipPanel).show(
            root,
            items,
            tested,
            self.ctx.ship_host,
            self.files.modelfile,
            spec.template.system if spec else None,
        )
        if tested:  # the smoke test's limits (its defaults for a job file this tuneq cannot read)
            limits = (spec.smoke_context, spec.smoke.max_tokens) if spec else (2048, 256)
            self.query_one(ChatPanel).set_model(root / tested.path, *limits)

    def _spec(self) -> JobSpec | None:
        """The job file the run directory runs, parsed once per change (``None`` while unreadable)."""
        text = self.files.job_toml
        if text is None:
            return None
        if self._parsed is None or self._parsed[0] != text:
            try:
                self._parsed = (text, parse_spec(text, f"job {self.job_id}"))
            except SpecError:  # written by another tuneq version: the commands go without its details
                return None
        return self._parsed[1]

    # --- keys -------------------------------------------------------------------------------------

    def action_back(self) -> None:
        self.dismiss()

    def action_tab(self, tab: str) -> None:
        self.query_one(TabbedContent).active = tab

    def action_search(self) -> None:
        self.action_tab("log")
        self.query_one(LogPanel).open_search()

    def _command_text(self) -> tuple[str, str] | None:
        command = self.query_one(ShipPanel).selected
        if command is None:
            self.notify(
                "nothing to copy yet: the commands appear once the job has tested its GGUF",
                severity="warning",
            )
            return None
        return command.label, command.text

    def action_copy_path(self) -> None:
        """Copy the tested GGUF's absolute path through the terminal (OSC 52)."""
        tested = tested_gguf(self.view.end if self.view else None)
        if self.job is None or tested is None:
            self.notify(
                "no GGUF to copy yet: the path appears once the job has tested one", severity="warning"
            )
            return
        path = str(Path(self.job.run_dir) / tested.path)
        self.app.copy_to_clipboard(path)
        self.notify(f"copied: {path}", markup=False)

    def action_copy(self) -> None:
        """Copy the highlighted command through the terminal (OSC 52); ``v`` shows it if that fails."""
        if chosen := self._command_text():
            self.action_tab("ship")
            self.app.copy_to_clipboard(chosen[1])
            self.notify(f"copied: {chosen[0]}  (nothing pasted? press v to see the text)")

    def action_view(self) -> None:
        if chosen := self._command_text():
            self.app.push_screen(TextScreen(chosen[0], chosen[1]))
