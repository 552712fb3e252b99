"""The submit screen through the Pilot: list, filter, validate inline, refuse invalid files, queue."""

from __future__ import annotations

import re
from pathlib import Path

from conftest import heavy_modules_after
from tui_fixtures import drive, make_app, noted, shows, wait_for, write_job_files

from runner.cli import main
from runner.store import Store
from tui.screens.queue import QueueScreen
from tui.screens.submit import SubmitScreen


def validated(screen: SubmitScreen, name: str) -> bool:
    return screen.result is not None and screen.result.path.name == name


async def open_submit(pilot) -> SubmitScreen:
    await pilot.press("n")
    screen = pilot.app.screen
    assert isinstance(screen, SubmitScreen)
    await wait_for(pilot, lambda: screen.result is not None)
    return screen


def test_valid_file_is_summarised_and_queued_on_confirm(store: Store, tmp_path: Path) -> None:
    jobs = tmp_path / "jobfiles"
    files = write_job_files(jobs)

    async def scenario(pilot) -> None:
        await open_submit(pilot)
        await shows(pilot, "demo-tiny.toml", "typo.toml", "✓ valid", "tuneq:tiny-llama", "43 train +")
        await pilot.press("enter")
        await shows(pilot, "Queue demo-tiny.toml (demo-tiny)?")
        await pilot.press("y")
        await wait_for(pilot, lambda: isinstance(pilot.app.screen, QueueScreen))
        await noted(pilot, "job 1 queued: demo-tiny")
        await wait_for(pilot, lambda: pilot.app.screen.query_one("#jobs").row_count == 1)

    drive(make_app(store, jobs), scenario)
    [job] = store.list_jobs()
    assert job.name == "demo-tiny" and job.source_path == str(files["good"].resolve())


def test_invalid_file_shows_problems_and_cannot_be_queued(store: Store, tmp_path: Path) -> None:
    jobs = tmp_path / "jobfiles"
    write_job_files(jobs)

    async def scenario(pilot) -> None:
        screen = await open_submit(pilot)
        await pilot.press("down")
        await wait_for(pilot, lambda: validated(screen, "typo.toml"))
        await shows(pilot, "✗ invalid", "line 7: train.learnin_rate: unknown key", "learning_rate")
        await pilot.press("enter")
        await noted(pilot, "only a valid job file can be queued")
        assert isinstance(pilot.app.screen, SubmitScreen)
        await pilot.press("escape")
        assert isinstance(pilot.app.screen, QueueScreen)

    drive(make_app(store, jobs), scenario, size=(120, 40))
    assert store.list_jobs() == []


def test_filter_and_confirm_declined(store: Store, tmp_path: Path) -> None:
    jobs = tmp_path / "jobfiles"
    write_job_files(jobs)

    async def scenario(pilot) -> None:
        screen = await open_submit(pilot)
        await pilot.press("slash", *"typo", "enter")
        await wait_for(pilot, lambda: validated(screen, "typo.toml"))
        await pilot.press("slash", *"zzz")  # focusing the box selects its text: typing replaces it
        await shows(pilot, "no job file matches “zzz”")
        await pilot.press(*["backspace"] * 3)
        await wait_for(pilot, lambda: validated(screen, "demo-tiny.toml"))
        await shows(pilot, "✓ valid")
        await pilot.press("enter")  # from the filter box: to the list
        await pilot.press("enter", "n")  # declined: nothing queued, still on the submit screen
        assert isinstance(pilot.app.screen, SubmitScreen)

    drive(make_app(store, jobs), scenario)
    assert store.list_jobs() == []


def test_a_path_typed_in_the_box_finds_files_outside_the_jobs_folder(store: Store, tmp_path: Path) -> None:
    """A folder typed in the box lists its job files; a .toml path typed in full is that file."""
    write_job_files(tmp_path / "jobfiles")
    elsewhere = write_job_files(tmp_path / "elsewhere" / "deep")

    async def scenario(pilot) -> None:
        screen = await open_submit(pilot)
        await pilot.press("slash", *str(tmp_path / "elsewhere"), "enter")
        await wait_for(pilot, lambda: screen.root == tmp_path / "elsewhere")
        await shows(pilot, "deep/demo-tiny.toml", "deep/typo.toml")
        await wait_for(pilot, lambda: validated(screen, "demo-tiny.toml"))
        assert screen.result is not None and screen.result.path == elsewhere["good"]
        await pilot.press("slash", *str(elsewhere["bad"]))
        await wait_for(pilot, lambda: validated(screen, "typo.toml"))
        await shows(pilot, "✗ invalid")

    drive(make_app(store, tmp_path / "jobfiles"), scenario, size=(120, 40))


def test_no_job_files(store: Store, tmp_path: Path) -> None:
    async def scenario(pilot) -> None:
        await pilot.press("n")
        await shows(pilot, "no job files in")

    drive(make_app(store, tmp_path / "missing"), scenario)


def test_the_summary_says_what_tuneq_validate_says(store: Store, tmp_path: Path, capsys) -> None:
    jobs = tmp_path / "jobfiles"
    files = write_job_files(jobs)
    assert main(["validate", str(files["good"])]) == 0
    lines = capsys.readouterr().out.splitlines()[1:]
    facts = [line.split(maxsplit=1)[1] for line in lines[: [ln.split()[0] for ln in lines].index("memory")]]
    assert facts[0].startswith("tuneq:tiny-llama") and re.fullmatch(r"\d+ prompt\(s\) on q4_k_m", facts[-1])

    async def scenario(pilot) -> None:
        await open_submit(pilot)
        await shows(pilot, "✓ valid", *facts)

    drive(make_app(store, jobs), scenario, size=(220, 40))


def test_the_sample_is_tokenized_in_a_child_so_the_tui_never_loads_transformers(tmp_path: Path) -> None:
    jobs = tmp_path / "jobfiles"
    write_job_files(jobs)
    code = f"""
import sys
sys.path.insert(0, {str(Path(__file__).parent)!r})
from pathlib import Path
from tui_fixtures import drive, make_app, plain, wait_for
from runner.store import Store

async def scenario(pilot):
    await pilot.press("n")
    screen = pilot.app.screen
    await wait_for(pilot, lambda: screen.result is not None)
    await pilot.press("e")
    sample = screen.query_one("#sample")
    await wait_for(pilot, lambda: "examples tokenized" in plain(sample.render()), timeout=120)
    assert "--- trained part" in plain(sample.render()), plain(sample.render())

with Store() as store:
    drive(make_app(store, Path({str(jobs)!r})), scenario)
"""
    assert heavy_modules_after(code, ("transformers", "tokenizers", "torch")) == []
