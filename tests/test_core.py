"""The core: the stage names the pipeline runs, the one worker-liveness rule, the line tail, and nothing
heavy loaded."""

from __future__ import annotations

import socket
import subprocess
import sys
import time
from pathlib import Path

from conftest import heavy_modules_after

from runner.core.stages import STAGE_NAMES
from runner.core.tail import LineTail
from runner.core.workers import worker_alive
from runner.store import WorkerInfo
from tui.runfiles import LOG_START_BYTES, LogTail


def test_the_pipeline_runs_the_stages_the_core_names() -> None:
    from runner.pipeline.run import STAGES

    assert tuple(stage.name for stage in STAGES) == STAGE_NAMES


def test_a_worker_on_this_host_is_alive_while_its_process_is() -> None:
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    here, now = socket.gethostname(), time.time()
    assert not worker_alive(WorkerInfo("w", here, dead.pid, now, now), now)  # seen just now, but gone
    with subprocess.Popen([sys.executable, "-c", "import time; time.sleep(30)"]) as live:
        try:
            assert worker_alive(WorkerInfo("w", here, live.pid, 0, 0), now)  # silent, but running
        finally:
            live.kill()


def test_a_worker_on_another_host_is_alive_while_its_heartbeat_is_within_the_lease() -> None:
    seen = WorkerInfo("w", "elsewhere", 1, 0, 1000.0)
    assert worker_alive(seen, 1060.0)
    assert not worker_alive(seen, 1060.5)
    assert worker_alive(seen, 1100.0, lease_s=100)


def test_importing_the_core_the_cli_and_the_tui_loads_no_native_library() -> None:
    code = "import runner.core.stages, runner.core.workers, runner.core.present, runner.cli, tui.app"
    heavy = ("numpy", "torch", "transformers", "llama_cpp", "runner.pipeline", "ray")
    assert heavy_modules_after(code, heavy) == []


def test_a_line_tail_returns_complete_lines_once(tmp_path: Path) -> None:
    path = tmp_path / "grows.txt"
    tail = LineTail(path)
    assert tail.read_lines() == []  # not there yet
    path.write_bytes(b"one\ntw")
    assert tail.read_lines() == [b"one"]  # the torn line waits
    with path.open("ab") as handle:
        handle.write(b"o\nthree\n")
    assert tail.read_lines() == [b"two", b"three"]
    assert tail.read_lines() == []


def test_a_long_log_is_read_from_its_last_lines(tmp_path: Path) -> None:
    log = tmp_path / "log.txt"
    log.write_text("".join(f"line {i}\n" for i in range(100_000)))  # ~1 MiB
    lines = LogTail(log).read_new()
    assert lines[-1] == "line 99999" and lines[0].startswith("line ")
    assert sum(len(line) + 1 for line in lines) <= LOG_START_BYTES  # the cut first line is dropped
