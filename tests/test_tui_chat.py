"""The job screen's Chat tab: the tested GGUF (the real tiny model) answers, turn after turn, in a child
process holding llama.cpp, asked the smoke stage's way."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from conftest import gone
from test_fidelity import tiny_ggufs  # noqa: F401  (session fixture: the tiny model as GGUF files)
from test_tui_job import open_job
from tui_fixtures import drive, make_app, seed_queue, shows, wait_for

from runner import commands
from runner.store import Store
from tui.chat import ChatSession
from tui.widgets.chat_panel import ChatPanel

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture
def ids(store: Store) -> dict[str, int]:
    return seed_queue(store, commands.runs_root(store))


def test_the_tested_gguf_answers_in_the_chat_tab(
    store: Store,
    ids: dict[str, int],
    tmp_path: Path,
    tiny_ggufs: dict[str, Path],  # noqa: F811
) -> None:
    run = Path(store.get(ids["demo-tiny"]).run_dir)
    shutil.copy(tiny_ggufs["q4_k_m"], run / "gguf" / "demo-tiny-Q4_K_M.gguf")  # the file job_end names
    shutil.copy(ROOT / "jobs" / "demo-tiny.toml", run / "job.toml")

    async def scenario(pilot) -> None:
        screen = await open_job(pilot, ids["demo-tiny"])
        await pilot.press("5")
        panel = screen.query_one(ChatPanel)
        await wait_for(pilot, lambda: panel.session is not None)
        await shows(pilot, "demo-tiny-Q4_K_M.gguf: greedy, at most 160 tokens an answer")
        panel.query_one("#chat-input").focus()
        await pilot.press(*"What is the most likely diagnosis?", "enter")
        await shows(pilot, "you: What is the most likely diagnosis?")
        await wait_for(pilot, lambda: len(panel.messages) == 2, timeout=120)
        assert panel.messages[1]["role"] == "assistant" and "tokens, " in str(panel.transcript)
        await pilot.press(*"And then?", "enter")  # the conversation goes on: both turns are sent
        await wait_for(pilot, lambda: len(panel.messages) == 4, timeout=120)
        session = panel.session
        pid = session.pid if session is not None else None
        assert pid is not None and not gone(pid)
        await pilot.press("escape")  # leaving the job stops the model's process
        await wait_for(pilot, lambda: gone(pid))

    drive(make_app(store, tmp_path), scenario, size=(120, 40))


def test_a_file_that_is_no_model_is_said_not_crashed(tmp_path: Path) -> None:
    bogus = tmp_path / "x.gguf"
    bogus.write_bytes(b"not a model")
    session = ChatSession(bogus, 512, 16)
    try:
        reply = session.ask([{"role": "user", "content": "hi"}])
    finally:
        session.close()
    assert reply["error"].startswith(f"cannot load {bogus}")
