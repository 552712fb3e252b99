"""The job screen through the Pilot: timeline, live numbers, plot, log, smoke answers, artifacts, copy."""

from __future__ import annotations

from pathlib import Path

import pytest
from tui_fixtures import WORKER, drive, make_app, noted, screen_text, seed_queue, shows, wait_for

from runner import commands
from runner.core.events import EventWriter, JobEnd, Progress, StageEnd, StageStart
from runner.ship.reach import ship_host
from runner.store import Owner, Store
from tui.screens.job import JobScreen
from tui.screens.text_view import TextScreen
from tui.widgets.log_panel import LogPanel
from tui.widgets.loss_plot import LossPlot
from tui.widgets.ship_panel import ShipPanel


@pytest.fixture
def ids(store: Store) -> dict[str, int]:
    return seed_queue(store, commands.runs_root(store))


async def open_job(pilot, job_id: int) -> JobScreen:
    await wait_for(pilot, lambda: pilot.app.screen.query_one("#jobs").row_count > 0)
    table = pilot.app.screen.query_one("#jobs")
    table.move_cursor(row=table.get_row_index(str(job_id)))
    await pilot.press("enter")
    screen = pilot.app.screen
    assert isinstance(screen, JobScreen)
    await wait_for(pilot, lambda: screen.job is not None and screen.view is not None)
    return screen


def test_finished_job_overview(store: Store, ids: dict[str, int], tmp_path: Path) -> None:
    async def scenario(pilot) -> None:
        screen = await open_job(pilot, ids["demo-tiny"])
        run = Path(store.get(ids["demo-tiny"]).run_dir)
        await shows(pilot, "job 1 demo-tiny", "succeeded", "✓ data", "✓ smoke", "step  60/60", "eval  0.4333")
        await shows(pilot, f"Q4_K_M {run}/gguf/demo-tiny-Q4_K_M.gguf")
        plotted = screen.query_one(LossPlot).plotted
        assert plotted is not None
        train, evals = plotted
        assert len(train[0]) == 60 and evals[0] == (20.0, 40.0, 60.0)

    drive(make_app(store, tmp_path), scenario, size=(200, 50))  # wide enough for the whole path


def test_running_job_updates_live(store: Store, ids: dict[str, int], tmp_path: Path) -> None:
    run = Path(store.get(ids["medical-r1"]).run_dir)

    async def scenario(pilot) -> None:
        await open_job(pilot, ids["medical-r1"])
        await shows(pilot, "running", "● train", "○ smoke", "step  30/60")
        events = EventWriter(run / "events.jsonl", str(ids["medical-r1"]))
        events.emit(Progress(stage="train", step=31, max_steps=60, loss=0.777, eta_s=29.0))
        await shows(pilot, "step  31/60", "loss  0.7770", "● train         52%")
        events.emit(StageEnd(stage="train", ok=True, seconds=60.0))
        events.emit(StageStart(stage="lora"))
        events.emit(Progress(stage="lora", done=480, total=1000, unit="bytes", eta_s=3.0))
        await shows(pilot, "● lora          48%", "step  31/60")  # training's numbers stay on screen
        with (run / "log.txt").open("a") as log:
            log.write("a brand new log line\n")
        await pilot.press("2")
        await shows(pilot, "a brand new log line")

    drive(make_app(store, tmp_path), scenario)


def test_failed_job_shows_reason(store: Store, ids: dict[str, int], tmp_path: Path) -> None:
    async def scenario(pilot) -> None:
        await open_job(pilot, ids["chat-lora"])
        await shows(pilot, "failed", "CUDA out of memory", "✗ train", "○ lora")
        await pilot.press("4")
        await shows(pilot, "no artifacts yet")
        await pilot.press("c")
        await noted(pilot, "nothing to copy yet")
        await pilot.press("y")
        await noted(pilot, "no GGUF to copy yet")

    drive(make_app(store, tmp_path), scenario)


def test_log_tab_follows_and_searches(store: Store, ids: dict[str, int], tmp_path: Path) -> None:
    async def scenario(pilot) -> None:
        screen = await open_job(pilot, ids["demo-tiny"])
        await pilot.press("2")
        await shows(pilot, "job succeeded")  # the tail end is in view
        await pilot.press("slash", *"quantize")
        log = screen.query_one(LogPanel).query_one("#log-view")
        await wait_for(pilot, lambda: 0 < log.line_count <= 3)
        assert all("quantize" in line for line in log.lines)
        await pilot.press("escape")  # clears the search
        await wait_for(pilot, lambda: log.line_count > 60)
        await pilot.press("escape")  # back to the queue
        assert not isinstance(pilot.app.screen, JobScreen)

    drive(make_app(store, tmp_path), scenario)


def test_log_tab_shows_no_escape_sequences(store: Store, ids: dict[str, int], tmp_path: Path) -> None:
    """Textual's Log passes ESC (and C1 controls) to the terminal: the panel strips them first."""
    run = Path(store.get(ids["medical-r1"]).run_dir)
    with (run / "log.txt").open("a") as log:
        log.write("\x1b]0;pwned\x07\x1b[2J\x1b[31mhostile\x1b[0m \x9b6nline\n")
        log.write("Map:  10%|█         | 4/40\rMap:  50%|█████     | 20/40\rMap: 100%|██████████| 40/40\r\n")

    async def scenario(pilot) -> None:
        screen = await open_job(pilot, ids["medical-r1"])
        await pilot.press("2")
        view = screen.query_one(LogPanel).query_one("#log-view")
        await wait_for(pilot, lambda: any("hostile" in line for line in view.lines))
        assert [line for line in view.lines if "hostile" in line] == ["hostile 6nline"]
        await wait_for(pilot, lambda: any("Map:" in line for line in view.lines))
        assert [line for line in view.lines if "Map:" in line] == ["Map: 100%|██████████| 40/40"]  # as shown

    drive(make_app(store, tmp_path), scenario)


def test_smoke_and_ship_tabs_and_copy(store: Store, ids: dict[str, int], tmp_path: Path) -> None:
    run = Path(store.get(ids["demo-tiny"]).run_dir)
    (run / "ship").mkdir()
    (run / "ship" / "Modelfile").write_text('FROM ./demo-tiny-Q4_K_M.gguf\nTEMPLATE """{{ .Prompt }}"""\n')
    (run / "job.toml").write_text(  # the job's system prompt: the llama.cpp line passes it as ship/ does
        'name = "demo-tiny"\n[model]\nbase = "tuneq:tiny-llama"\n[data]\nsource = "d.jsonl"\n'
        '[template]\nstyle = "r1"\nsystem = "Answer as a doctor."\n'
    )
    copied: list[str] = []

    async def scenario(pilot) -> None:
        pilot.app.copy_to_clipboard = copied.append
        screen = await open_job(pilot, ids["demo-tiny"])
        await pilot.press("3")
        await shows(pilot, "PASSED", "Acute myocardial infarction")
        await pilot.press("4")
        await shows(pilot, "gguf/demo-tiny-Q4_K_M.gguf", "sha256 ", "scp to your laptop", "Ollama Modelfile")
        q4 = run / "gguf" / "demo-tiny-Q4_K_M.gguf"
        assert f"me@gpu-box:{q4}" in screen_text(pilot.app)
        await pilot.press("c")
        assert copied == [f"scp me@gpu-box:{q4} ."]
        await noted(pilot, "copied: scp to your laptop")
        await pilot.press("y")  # the footer's "Copy GGUF path": the path itself, from any tab
        assert copied[-1] == str(q4)
        await noted(pilot, f"copied: {q4}")
        panel = screen.query_one(ShipPanel)
        panel.query_one("#ship-commands").focus()
        await pilot.press("down", "down", "c")
        assert copied[-1] == "llama-cli -m ./demo-tiny-Q4_K_M.gguf --jinja -sys 'Answer as a doctor.'"
        await pilot.press("end", "v")  # the fallback: the text in a selectable view
        assert isinstance(pilot.app.screen, TextScreen)
        await shows(pilot, "FROM ./demo-tiny-Q4_K_M.gguf", "TEMPLATE")  # the ship stage's Modelfile
        await pilot.press("escape")
        assert pilot.app.screen is screen
        await pilot.press("1")
        await shows(pilot, "stages", "training")

    drive(make_app(store, tmp_path), scenario, size=(200, 50))


def test_the_tested_file_is_the_one_job_end_names(store: Store, ids: dict[str, int], tmp_path: Path) -> None:
    """With ``smoke.gguf = "q8_0"`` the header, the ship tab and the commands name the Q8_0 file."""
    run = Path(store.get(ids["demo-tiny"]).run_dir)
    EventWriter(run / "events.jsonl", str(ids["demo-tiny"])).emit(
        JobEnd(ok=True, exit_code=0, tested_gguf="gguf/demo-tiny-Q8_0.gguf", tested_quant="q8_0")
    )
    copied: list[str] = []

    async def scenario(pilot) -> None:
        pilot.app.copy_to_clipboard = copied.append
        await open_job(pilot, ids["demo-tiny"])
        await shows(pilot, f"Q8_0 {run}/gguf/demo-tiny-Q8_0.gguf")
        await pilot.press("4")
        await shows(pilot, f"tested Q8_0: {run}/gguf/demo-tiny-Q8_0.gguf", "scp to your laptop")
        await pilot.press("c", "y")
        assert copied == [
            f"scp me@gpu-box:{run}/gguf/demo-tiny-Q8_0.gguf .",
            f"{run}/gguf/demo-tiny-Q8_0.gguf",
        ]

    drive(make_app(store, tmp_path), scenario, size=(200, 50))


def test_the_ship_tab_fetches_from_the_ssh_server_address_and_port(
    store: Store, ids: dict[str, int], tmp_path: Path
) -> None:
    """On a server reached over IPv6 on port 2222 ($SSH_CONNECTION): ``scp -P``, ``rsync -e 'ssh -p'``, the
    address in brackets, and the panel says where that came from."""
    host = ship_host(tmp_path / "state", {"SSH_CONNECTION": "2001:db8::1 50000 2001:db8::7 2222"})
    q4 = Path(store.get(ids["demo-tiny"]).run_dir) / "gguf" / "demo-tiny-Q4_K_M.gguf"
    copied: list[str] = []

    async def scenario(pilot) -> None:
        pilot.app.copy_to_clipboard = copied.append
        screen = await open_job(pilot, ids["demo-tiny"])
        await pilot.press("4")
        await shows(pilot, f"fetched from {host.user}@[2001:db8::7] port 2222 ($SSH_CONNECTION)")
        await pilot.press("c")
        screen.query_one(ShipPanel).query_one("#ship-commands").focus()
        await pilot.press("down", "c")
        assert copied == [
            f"scp -P 2222 {host.user}@[2001:db8::7]:{q4} .",
            f"rsync -avP -e 'ssh -p 2222' {host.user}@[2001:db8::7]:{q4} .",
        ]

    drive(make_app(store, tmp_path, ship_host=host), scenario, size=(200, 50))


def test_a_cluster_job_names_its_node(store: Store, ids: dict[str, int], tmp_path: Path) -> None:
    store.set_handle(ids["medical-r1"], Owner(WORKER.id, 1), "tuneq-ab12-2-c0ffee@10.0.0.2/5dd14e5a", now=0)

    async def scenario(pilot) -> None:
        await open_job(pilot, ids["medical-r1"])
        await shows(pilot, "running", "on 10.0.0.2/5dd14e5a")

    drive(make_app(store, tmp_path), scenario)
