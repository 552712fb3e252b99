"""The queue: every job with its state, stage, progress, loss, ETA and age; filter, sort, act on a job."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, ClassVar

from rich.text import Text
from textual import on, work
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.reactive import reactive
from textual.screen import Screen
from textual.widgets import DataTable, Footer, Input, Static
from textual.worker import get_current_worker

from runner import commands
from runner.core.jobstate import JobState
from runner.core.present import count, one_line
from runner.spec import SpecError
from runner.store import Job, JobError, StoreError
from tui.context import TuiContext
from tui.messages import JobsPolled, StoreFailed
from tui.pulse import Pulse
from tui.screens.confirm import ConfirmScreen
from tui.screens.job import JobScreen
from tui.screens.submit import SubmitScreen
from tui.widgets.jobs_table import JobsTable

AGE_REFRESH_S = 10.0  # reload this often even when nothing changed, so ages move
STATE_FILTERS = ("all", "active", *(str(s) for s in JobState))
_ORDER = {JobState.RUNNING: 0, JobState.QUEUED: 1}
SORTS: dict[str, Callable[[Job], Any]] = {
    "queue order": lambda j: (
        _ORDER.get(j.state, 2),
        -j.priority if j.state.is_active else 0,
        j.id if j.state.is_active else -(j.finished_at or j.created_at),
    ),
    "newest": lambda j: -j.id,
    "name": lambda j: (j.name.lower(), j.id),
}


def keep(job: Job, state: str, text: str) -> bool:
    """Whether ``job`` passes the state filter and the text filter (id or name)."""
    if state == "active":
        if not job.state.is_active:
            return False
    elif state != "all" and job.state != state:
        return False
    return not text or text in job.name.lower() or text == str(job.id)


class QueueScreen(Screen[None]):
    """The first screen."""

    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("enter", "open", "Open the job", show=False),
        Binding("n", "submit", "Submit"),
        Binding("c", "cancel", "Cancel"),
        Binding("r", "retry", "Retry"),
        Binding("R", "retry_edited", "Retry edited"),
        Binding("plus,equals_sign", "priority(1)", "Priority up", show=False),
        Binding("minus", "priority(-1)", "Priority down", show=False),
        Binding("slash", "filter", "Filter"),
        Binding("f", "cycle_state", "State"),
        Binding("s", "cycle_sort", "Sort"),
        Binding("escape", "clear_filter", "Clear filter", show=False),
    ]
    state_filter: reactive[str] = reactive("all")
    sort: reactive[str] = reactive("queue order")
    text_filter: reactive[str] = reactive("")
    worker_alive: reactive[bool] = reactive(True)

    def __init__(self, ctx: TuiContext) -> None:
        super().__init__()
        self.ctx = ctx
        self.pulse = Pulse(ctx.poll_s)
        self.jobs: list[Job] = []
        self.polled_at = 0.0

    def compose(self) -> ComposeResult:
        yield Static(id="title", classes="title")
        yield Static(
            "no worker is running: jobs wait until you start one with  tuneq daemon start", id="banner"
        )
        yield Input(placeholder="filter by name or id (enter: keep, escape: clear)", id="filter")
        yield JobsTable(id="jobs")
        yield Footer()

    def on_mount(self) -> None:
        self.query_one(JobsTable).focus()
        self._poll()

    def on_screen_suspend(self) -> None:
        self.pulse.paused = True

    def on_screen_resume(self) -> None:
        self.pulse.paused = False
        self.pulse.kick()

    @work(thread=True, exclusive=True, group="queue-poll")
    def _poll(self) -> None:
        worker = get_current_worker()
        version, loaded_at = None, float("-inf")
        while not worker.is_cancelled:
            if not self.pulse.paused:
                try:
                    now, current = self.ctx.clock(), self.ctx.store.data_version()
                    if self.pulse.take_forced() or current != version or now - loaded_at >= AGE_REFRESH_S:
                        version, loaded_at = current, now
                        jobs, alive = self.ctx.store.list_jobs(), self.ctx.worker_alive()
                        self.post_message(JobsPolled(jobs, alive, now))
                except StoreError as exc:
                    self.post_message(StoreFailed(str(exc)))
            self.pulse.wait()

    @on(JobsPolled)
    def _polled(self, message: JobsPolled) -> None:
        self.jobs, self.polled_at, self.worker_alive = message.jobs, message.now, message.worker_alive
        self._show()

    @on(StoreFailed)
    def _failed(self, message: StoreFailed) -> None:
        self.notify(message.error, title="queue database", severity="error", timeout=10, markup=False)

    def watch_worker_alive(self, alive: bool) -> None:
        self.query_one("#banner").set_class(not alive, "-shown")

    def watch_state_filter(self) -> None:
        self._show()

    def watch_sort(self) -> None:
        self._show()

    def watch_text_filter(self) -> None:
        self._show()

    def _show(self) -> None:
        if not self.is_mounted:
            return
        text = self.text_filter.lower().strip()
        shown = sorted((j for j in self.jobs if keep(j, self.state_filter, text)), key=SORTS[self.sort])
        self.query_one(JobsTable).show(shown, self.polled_at)
        running = sum(j.state is JobState.RUNNING for j in self.jobs)
        queued = sum(j.state is JobState.QUEUED for j in self.jobs)
        filters = f"state: {self.state_filter} · sort: {self.sort}" + (f" · “{text}”" if text else "")
        self.query_one("#title", Static).update(
            Text.assemble(
                ("tuneq ", "bold"),
                f"· {count(len(self.jobs), 'job')} · {running} running · {queued} queued   ",
                (filters, "dim"),
            )
        )

    # --- keys -------------------------------------------------------------------------------------

    def action_filter(self) -> None:
        self.query_one("#filter", Input).focus()

    @on(Input.Changed, "#filter")
    def _filter_changed(self, event: Input.Changed) -> None:
        self.text_filter = event.value
        self.query_one("#filter").set_class(bool(event.value), "-active")

    @on(Input.Submitted, "#filter")
    def _filter_done(self) -> None:
        self.query_one(JobsTable).focus()

    def action_clear_filter(self) -> None:
        self.query_one("#filter", Input).value = ""
        self.query_one(JobsTable).focus()

    def action_cycle_state(self) -> None:
        self.state_filter = STATE_FILTERS[(STATE_FILTERS.index(self.state_filter) + 1) % len(STATE_FILTERS)]

    def action_cycle_sort(self) -> None:
        names = list(SORTS)
        self.sort = names[(names.index(self.sort) + 1) % len(names)]

    def _selected(self) -> Job | None:
        job_id = self.query_one(JobsTable).selected_id
        return next((j for j in self.jobs if j.id == job_id), None)

    def action_open(self) -> None:
        if job := self._selected():
            self.app.push_screen(JobScreen(self.ctx, job.id))

    @on(DataTable.RowSelected)
    def _row_selected(self, event: DataTable.RowSelected) -> None:
        event.stop()
        self.action_open()

    def action_submit(self) -> None:
        self.app.push_screen(SubmitScreen(self.ctx))

    def action_cancel(self) -> None:
        job = self._selected()
        if job is None:
            return
        if not job.state.is_active:
            self.notify(
                f"job {job.id} is {job.state}: only queued or running jobs can be cancelled",
                severity="warning",
            )
            return
        what = "stop the running" if job.state is JobState.RUNNING else "cancel the queued"
        question = f"Really {what} job {job.id} ({one_line(job.name)})?"

        def answered(yes: bool | None) -> None:
            if yes:
                self._intent(commands.cancel, job.id)

        self.app.push_screen(ConfirmScreen(question), answered)

    def action_retry(self) -> None:
        if job := self._selected():
            self._intent(commands.retry, job.id)

    def action_retry_edited(self) -> None:
        """Retry with the job file as it is now (the file it was submitted from, fixed by the user)."""
        if job := self._selected():
            self._plan_retry(job)

    @work(thread=True, group="intent")
    def _plan_retry(self, job: Job) -> None:
        """Validate the edited file off the UI thread, then ask before requeueing."""
        try:
            plan = commands.plan_retry(self.ctx.store, job.id, job.source_path)
        except (JobError, SpecError, StoreError) as exc:
            self.app.call_from_thread(self.notify, str(exc), severity="warning", markup=False)
            return
        question = f"Retry job {job.id} with {job.source_path} as it is now?\n{plan.describe()}"

        def answered(yes: bool | None) -> None:
            if yes:
                self._intent(
                    lambda store, job_id: commands.retry_edited(store, job_id, job.source_path)[0], job.id
                )

        self.app.call_from_thread(self.app.push_screen, ConfirmScreen(question), answered)

    def action_priority(self, delta: int) -> None:
        if job := self._selected():
            self._intent(lambda store, job_id: commands.bump_priority(store, job_id, delta), job.id)

    @work(thread=True, group="intent")
    def _intent(self, command: Callable[..., Job], job_id: int) -> None:
        """Write an intent through runner.commands (off the UI thread) and say what happened."""
        try:
            job = command(self.ctx.store, job_id)
        except (JobError, SpecError, StoreError) as exc:
            self.app.call_from_thread(self.notify, str(exc), severity="warning", markup=False)
            return
        note = "cancel requested" if job.cancel_requested else f"{job.state}, priority {job.priority}"
        self.app.call_from_thread(self.notify, f"job {job.id}: {note}")
        self.pulse.kick()
