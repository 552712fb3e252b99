"""End to end in tmux: a worker, ``tuneq tui``, submit the demo job through the UI, quit while it runs,
reopen, watch it succeed, see the Q4_K_M path, quit with q. The job never notices the TUI coming and going."""

from __future__ import annotations

import os
import shlex
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from tui_fixtures import ROOT

from runner.core.jobstate import JobState
from runner.store import Store

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(shutil.which("tmux") is None, reason="tmux is not installed"),
]


class Tmux:
    """One tmux server on a private socket, one window running the TUI."""

    def __init__(self, socket: str, env: dict[str, str]) -> None:
        self.socket, self.env = socket, env

    def tmux(self, *args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            ["tmux", "-L", self.socket, *args], capture_output=True, text=True, env=self.env
        )

    def open_tui(self) -> None:
        command = shlex.join([sys.executable, "-m", "runner", "tui", "--jobs", str(ROOT / "jobs")])
        assert self.tmux("new-session", "-d", "-s", "tui", "-x", "120", "-y", "40", command).returncode == 0

    def screen(self) -> str:
        return self.tmux("capture-pane", "-p", "-t", "tui").stdout

    def alive(self) -> bool:
        return self.tmux("has-session", "-t", "tui").returncode == 0

    def keys(self, *keys: str) -> None:
        self.tmux("send-keys", "-t", "tui", *keys)

    def wait_for(self, text: str, timeout: float = 30.0) -> str:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if text in (screen := self.screen()):
                return screen
            time.sleep(0.2)
        raise AssertionError(f"{text!r} never showed; the screen:\n{self.screen()}")

    def wait_closed(self, timeout: float = 10.0) -> None:
        deadline = time.monotonic() + timeout
        while self.alive():
            assert time.monotonic() < deadline, "the TUI did not quit"
            time.sleep(0.1)


@pytest.fixture
def env(tmp_path: Path) -> dict[str, str]:
    pipeline = shlex.join([sys.executable, str(ROOT / "tests" / "tui_fixtures.py")])
    return {
        **os.environ,
        "TUNEQ_HOME": str(tmp_path / "state"),
        "TUNEQ_PIPELINE_CMD": pipeline,
        "TUI_FAKE_SECONDS": "8",
        "PYTHONPATH": str(ROOT),
        "TERM": "xterm-256color",
    }


@pytest.fixture
def worker(env: dict[str, str]) -> Iterator[None]:
    run = [sys.executable, "-m", "runner", "daemon"]
    subprocess.run([*run, "start"], env=env, check=True, cwd=ROOT, capture_output=True)
    yield
    subprocess.run([*run, "stop"], env=env, cwd=ROOT, capture_output=True)


@pytest.fixture
def tmux(env: dict[str, str], tmp_path: Path) -> Iterator[Tmux]:
    mux = Tmux(f"tuneq-test-{os.getpid()}-{tmp_path.name}", env)
    yield mux
    mux.tmux("kill-server")


def test_submit_watch_and_ship_through_the_tui(env: dict[str, str], worker: None, tmux: Tmux) -> None:
    tmux.open_tui()
    tmux.wait_for("tuneq · 0 jobs")
    assert "tuneq daemon start" not in tmux.screen()  # the worker is up
    tmux.keys("n")
    tmux.wait_for("✓ valid")
    tmux.keys("Enter")
    tmux.wait_for("Queue demo-tiny.toml")
    tmux.keys("y")
    tmux.wait_for("running")
    tmux.keys("q")  # leave while the job runs
    tmux.wait_closed()

    tmux.open_tui()
    tmux.wait_for("succeeded", timeout=60)
    tmux.keys("Enter")
    q4 = Path(env["TUNEQ_HOME"]) / "runs" / "1" / "gguf" / "demo-tiny-Q4_K_M.gguf"
    screen = tmux.wait_for("Q4_K_M ")
    assert str(q4) in screen.replace("\n", "")
    tmux.keys("q")
    tmux.wait_closed()

    with Store(Path(env["TUNEQ_HOME"]) / "queue.db") as store:
        [job] = store.list_jobs()
    assert job.state is JobState.SUCCEEDED and job.attempts == 1
    assert q4.is_file()
