"""Snapshots of the queue, job and submit screens at 80x24 and 120x40 (``--snapshot-update`` to accept).

Deterministic: a fixed clock, fixed data, and a fixed directory (paths show on screen)."""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest
from tui_fixtures import make_app, seed_queue, wait_for, write_job_files

from runner import commands
from runner.store import Store
from tui.screens.job import JobScreen
from tui.screens.submit import SubmitScreen

SIZES = [pytest.param((80, 24), id="80x24"), pytest.param((120, 40), id="120x40")]
FIXED_DIR = Path(tempfile.gettempdir()) / "tuneq-tui-snapshots"


@pytest.fixture
def snap_store() -> Iterator[tuple[Store, Path]]:
    shutil.rmtree(FIXED_DIR, ignore_errors=True)
    with Store(FIXED_DIR / "state" / "queue.db") as store:
        seed_queue(store, commands.runs_root(store))
        jobs = FIXED_DIR / "jobs"
        write_job_files(jobs)
        yield store, jobs
    shutil.rmtree(FIXED_DIR, ignore_errors=True)


async def queue_loaded(pilot) -> None:
    await wait_for(pilot, lambda: pilot.app.screen.query_one("#jobs").row_count == 6)


@pytest.mark.parametrize("size", SIZES)
def test_queue(snap_compare, snap_store, size: tuple[int, int]) -> None:
    assert snap_compare(make_app(*snap_store), terminal_size=size, run_before=queue_loaded)


@pytest.mark.parametrize("size", SIZES)
def test_job(snap_compare, snap_store, size: tuple[int, int]) -> None:
    async def open_finished_job(pilot) -> None:
        await queue_loaded(pilot)
        await pilot.press("down", "down", "down", "down", "enter")  # demo-tiny, succeeded
        screen = pilot.app.screen
        assert isinstance(screen, JobScreen)
        await wait_for(pilot, lambda: screen.view is not None and screen.view.end is not None)
        await pilot.pause()

    assert snap_compare(make_app(*snap_store), terminal_size=size, run_before=open_finished_job)


@pytest.mark.parametrize("size", SIZES)
def test_submit(snap_compare, snap_store, size: tuple[int, int]) -> None:
    async def open_submit(pilot) -> None:
        await queue_loaded(pilot)
        await pilot.press("n", "down")  # the invalid file: its problems
        screen = pilot.app.screen
        assert isinstance(screen, SubmitScreen)
        await wait_for(pilot, lambda: screen.result is not None and screen.result.path.name == "typo.toml")
        await pilot.pause()

    assert snap_compare(make_app(*snap_store), terminal_size=size, run_before=open_submit)
