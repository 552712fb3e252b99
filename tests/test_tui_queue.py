"""The queue screen through the Pilot, on a real store with jobs in every state."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from conftest import JobFactory
from textual.coordinate import Coordinate
from tui_fixtures import (
    FIXED_NOW,
    WORKER,
    add_job,
    drive,
    make_app,
    noted,
    screen_text,
    seed_queue,
    shows,
    wait_for,
)

from runner import commands
from runner.core.jobstate import JobState
from runner.store import Store
from tui.screens.help import HelpScreen
from tui.screens.job import JobScreen
from tui.screens.submit import SubmitScreen
from tui.widgets.jobs_table import JobsTable


@pytest.fixture
def ids(store: Store) -> dict[str, int]:
    return seed_queue(store, commands.runs_root(store))


def table(pilot) -> JobsTable:
    return pilot.app.screen.query_one(JobsTable)


def names(pilot) -> list[str]:
    t = table(pilot)
    return [str(t.get_cell_at(Coordinate(i, t.get_column_index("name")))) for i in range(t.row_count)]


def state_of(pilot, job_id: int) -> str:
    """The state the table shows for a job, without its mark."""
    return str(table(pilot).get_cell(str(job_id), "state")).split(" ", 1)[1]


async def loaded(pilot) -> None:
    await wait_for(pilot, lambda: table(pilot).row_count > 0)


def select(pilot, job_id: int) -> None:
    t = table(pilot)
    t.move_cursor(row=t.get_row_index(str(job_id)))


def test_table_shows_every_job_in_queue_order(store: Store, ids: dict[str, int], tmp_path: Path) -> None:
    async def scenario(pilot) -> None:
        await loaded(pilot)
        assert names(pilot) == ["medical-r1", "small-sft", "big-sft", "chat-lora", "demo-tiny", "old-run"]
        await shows(pilot, "━━━───  50%", "1.250", "30s")  # bar, loss, ETA
        await shows(pilot, "15m", "3d")  # ages from the injected clock
        assert "tuneq daemon start" not in screen_text(pilot.app)  # the worker is alive

    drive(make_app(store, tmp_path), scenario)


def test_banner_when_no_worker_is_alive(store: Store, ids: dict[str, int], tmp_path: Path) -> None:
    async def scenario(pilot) -> None:
        await loaded(pilot)
        await shows(pilot, "no worker is running", "tuneq daemon start", "1h")

    drive(make_app(store, tmp_path, clock=lambda: FIXED_NOW + 3600), scenario)


def test_new_jobs_and_changes_from_other_processes_appear(
    store: Store, ids: dict[str, int], tmp_path: Path
) -> None:
    async def scenario(pilot) -> None:
        await loaded(pilot)
        with Store(store.path) as other:  # another connection, as the CLI or the worker would be
            add_job(other, commands.runs_root(other), "late-job", age_s=0)
            other.transition(ids["medical-r1"], JobState.RUNNING, JobState.SUCCEEDED, now=FIXED_NOW)
        await wait_for(pilot, lambda: "late-job" in names(pilot))
        assert str(table(pilot).get_cell(str(ids["medical-r1"]), "state")) == "✓ succeeded"

    drive(make_app(store, tmp_path), scenario)


def test_filter_by_text_and_state_and_sort(store: Store, ids: dict[str, int], tmp_path: Path) -> None:
    async def scenario(pilot) -> None:
        await loaded(pilot)
        await pilot.press("slash", *"sft")
        assert names(pilot) == ["small-sft", "big-sft"]
        await pilot.press("enter")  # keeps the filter, back to the table
        assert pilot.app.focused is table(pilot)
        await pilot.press("slash", "escape")
        assert len(names(pilot)) == 6
        await pilot.press("f")  # active
        assert names(pilot) == ["medical-r1", "small-sft", "big-sft"]
        await pilot.press("f")
        assert names(pilot) == ["small-sft", "big-sft"]  # queued
        await pilot.press("f")
        assert names(pilot) == ["medical-r1"]  # running
        await pilot.press("f", "f")
        assert names(pilot) == ["chat-lora"]  # failed
        await pilot.press("f", "f", "f")  # cancelled, interrupted, back to all
        assert len(names(pilot)) == 6
        await pilot.press("s")
        assert names(pilot)[0] == "old-run"  # newest first
        await pilot.press("s")
        assert names(pilot)[:2] == ["big-sft", "chat-lora"]  # by name

    drive(make_app(store, tmp_path), scenario)


def test_cancel_asks_first(store: Store, ids: dict[str, int], tmp_path: Path) -> None:
    async def scenario(pilot) -> None:
        await loaded(pilot)
        select(pilot, ids["small-sft"])
        await pilot.press("c")
        await shows(pilot, "Really cancel the queued job")
        await pilot.press("n")
        assert store.get(ids["small-sft"]).state is JobState.QUEUED
        await pilot.press("c", "y")
        await wait_for(pilot, lambda: store.get(ids["small-sft"]).state is JobState.CANCELLED)
        await wait_for(pilot, lambda: state_of(pilot, ids["small-sft"]) == "cancelled")
        select(pilot, ids["medical-r1"])
        await pilot.press("c", "y")  # a running job: the worker is asked to stop it
        await wait_for(pilot, lambda: store.get(ids["medical-r1"]).cancel_requested)
        await wait_for(pilot, lambda: state_of(pilot, ids["medical-r1"]) == "cancelling")
        select(pilot, ids["demo-tiny"])
        await pilot.press("c")  # finished: refused without a question
        await noted(pilot, "only queued or running")

    drive(make_app(store, tmp_path), scenario)


def test_priority_keys_add_to_the_stored_priority(store: Store, ids: dict[str, int], tmp_path: Path) -> None:
    """``+`` adds to what the store holds, not to the screen's copy: a priority set by another process
    since the screen last loaded is kept, and two quick presses both count."""

    async def scenario(pilot) -> None:
        await loaded(pilot)
        select(pilot, ids["big-sft"])
        elsewhere = [sys.executable, "-m", "runner", "priority", str(ids["big-sft"]), "10"]
        subprocess.run(elsewhere, check=True, capture_output=True)  # the screen still shows 0
        await pilot.press("plus", "plus")
        await wait_for(pilot, lambda: store.get(ids["big-sft"]).priority == 12)
        # every write the keys started has ended...
        await wait_for(pilot, lambda: all(w.is_finished for w in pilot.app.workers if w.group == "intent"))
        assert store.get(ids["big-sft"]).priority == 12  # ...and none added more

    drive(make_app(store, tmp_path, poll_s=2), scenario)  # no reload during the test but after each key


def test_retry_and_priority(store: Store, ids: dict[str, int], tmp_path: Path) -> None:
    async def scenario(pilot) -> None:
        await loaded(pilot)
        select(pilot, ids["chat-lora"])
        await pilot.press("r")
        await wait_for(pilot, lambda: store.get(ids["chat-lora"]).state is JobState.QUEUED)
        select(pilot, ids["big-sft"])
        await pilot.press("plus", "plus")
        await wait_for(pilot, lambda: store.get(ids["big-sft"]).priority == 2)
        await pilot.press("minus")
        await wait_for(pilot, lambda: store.get(ids["big-sft"]).priority == 1)
        select(pilot, ids["demo-tiny"])
        await pilot.press("r")  # a succeeded job cannot be retried: a warning, nothing changes
        await noted(pilot, "only failed, interrupted or cancelled")
        assert store.get(ids["demo-tiny"]).state is JobState.SUCCEEDED

    drive(make_app(store, tmp_path), scenario)


def test_retry_with_the_fixed_job_file(store: Store, make_job: JobFactory, tmp_path: Path) -> None:
    """``R``: the job file it was submitted from, fixed since, after a question naming what runs again."""
    path = make_job("fix-me")
    (job,) = commands.submit(store, [path])
    assert store.claim(WORKER.id, now=FIXED_NOW, lease_s=1e9) is not None
    store.transition(job.id, JobState.RUNNING, JobState.FAILED, now=FIXED_NOW, reason="smoke failed")
    path.write_text(path.read_text() + "\n[smoke]\nmax_tokens = 64\n")

    async def scenario(pilot) -> None:
        await loaded(pilot)
        await shows(pilot, "· 1 job ·")
        select(pilot, job.id)
        await pilot.press("R")
        await shows(pilot, "smoke changed: reuses data, train, lora", "runs smoke, fidelity, ship again")
        await pilot.press("y")
        await wait_for(pilot, lambda: store.get(job.id).state is JobState.QUEUED)
        assert "max_tokens = 64" in store.spec_text(job.id)
        path.write_text(path.read_text() + "[train]\nlearnig_rate = 1\n")
        store.transition(job.id, JobState.QUEUED, JobState.CANCELLED, now=FIXED_NOW)
        await pilot.press("R")  # a file that no longer validates: its problem, nothing requeued
        await noted(pilot, "train.learnig_rate: unknown key")
        assert store.get(job.id).state is JobState.CANCELLED

    drive(make_app(store, tmp_path), scenario)


def test_open_submit_help_and_quit(store: Store, ids: dict[str, int], tmp_path: Path) -> None:
    async def scenario(pilot) -> None:
        await loaded(pilot)
        select(pilot, ids["demo-tiny"])
        await pilot.press("enter")
        assert isinstance(pilot.app.screen, JobScreen) and pilot.app.screen.job_id == ids["demo-tiny"]
        await pilot.press("escape")
        await pilot.press("n")
        assert isinstance(pilot.app.screen, SubmitScreen)
        await pilot.press("escape")
        await pilot.press("question_mark")
        assert isinstance(pilot.app.screen, HelpScreen)
        await shows(pilot, "Submit", "Cancel", "Retry edited", "Quit", "Open the job", "Priority up")
        text = screen_text(pilot.app)
        assert "^q" not in text and "Focus Next" not in text  # Textual's own keys are not this screen's
        await pilot.press("escape")
        await pilot.press("q")
        assert pilot.app.return_code == 0

    drive(make_app(store, tmp_path), scenario)


def test_worker_heartbeat_brings_the_banner_down(store: Store, tmp_path: Path) -> None:
    async def scenario(pilot) -> None:
        await shows(pilot, "tuneq daemon start")
        with Store(store.path) as other:
            other.heartbeat(WORKER, now=FIXED_NOW, lease_s=60)
        await wait_for(pilot, lambda: "tuneq daemon start" not in screen_text(pilot.app))

    drive(make_app(store, tmp_path), scenario)


def test_names_are_shown_as_text_not_markup(store: Store, ids: dict[str, int], tmp_path: Path) -> None:
    """Names queued before ``--name`` was checked (an old queue): Rich markup and escape sequences are
    shown as plain text in the table, the cancel question and the job screen, never interpreted."""
    root = commands.runs_root(store)
    markup = add_job(store, root, "[/]", age_s=10)
    escape = add_job(store, root, "\x1b[31mred\x1b]0;title\x07\nx [bold]", age_s=5)

    async def scenario(pilot) -> None:
        await wait_for(pilot, lambda: "[/]" in names(pilot))
        assert "red x [bold]" in names(pilot)
        select(pilot, markup)
        await pilot.press("c")
        await shows(pilot, "Really cancel the queued job", "([/])?")
        await pilot.press("n")
        select(pilot, escape)
        await pilot.press("enter")
        await shows(pilot, f"job {escape} red x [bold]")

    drive(make_app(store, tmp_path), scenario, size=(160, 40))
