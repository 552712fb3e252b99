"""Kill loop against the real demo pipeline: SIGKILL the worker 10 times while the demo job trains,
start a new worker each time; the job ends ``succeeded``, resumed from a checkpoint, and nothing else in
the queue changed."""

from __future__ import annotations

import importlib.util
import json
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from functools import partial
from pathlib import Path
from typing import Any, BinaryIO

import pytest
from conftest import DATA, ROOT

from runner import commands
from runner.core.jobstate import JobState
from runner.store import Store

DEMO = ROOT / "jobs" / "demo-tiny.toml"
KILLS = 10


def _demo_job(directory: Path) -> Path:
    """The demo with checkpoints every 5 steps, enough steps for 10 kills, and a retry per kill."""
    (directory / "data").mkdir(parents=True)
    shutil.copy(DATA, directory / "data" / DATA.name)
    text = DEMO.read_text().replace("max_steps = 60", "max_steps = 120")
    text = text.replace("save_steps = 20", "save_steps = 5")
    path = directory / "demo-kill.toml"
    path.write_text(text + f"\n[run]\nretries = {KILLS}\n")
    return path


def _find(data: Any, key: str) -> Iterator[Any]:
    if isinstance(data, dict):
        for k, v in data.items():
            if k == key:
                yield v
            yield from _find(v, key)
    elif isinstance(data, list):
        for v in data:
            yield from _find(v, key)


def _training_at(store: Store, job_id: int, step: int) -> bool:
    progress = store.get(job_id).progress
    return progress.stage == "train" and (progress.step or 0) >= step


def _start_worker(log: BinaryIO) -> subprocess.Popen[bytes]:
    return subprocess.Popen([sys.executable, "-m", "runner.worker"], stdout=log, stderr=subprocess.STDOUT)


def _wait(check: Callable[[], bool], timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.2)


@pytest.mark.slow
@pytest.mark.timeout(3600)
@pytest.mark.skipif(importlib.util.find_spec("torch") is None, reason="needs the training stack")
def test_kill_loop_resumes_from_checkpoints(
    store: Store, make_job, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("TUNEQ_PIPELINE_CMD")
    (demo,) = commands.submit(store, [_demo_job(tmp_path / "demo")])
    (waiting,) = commands.submit(store, [make_job("waiting")], priority=-1)
    (cancelled,) = commands.submit(store, [make_job("cancelled")], priority=-1)
    commands.cancel(store, cancelled.id)
    others = [store.get(waiting.id), store.get(cancelled.id)]
    logs = (tmp_path / "workers.log").open("ab")
    killed_at = 0
    for _ in range(KILLS):
        worker = _start_worker(logs)
        _wait(partial(_training_at, store, demo.id, killed_at + 10), timeout=600)
        killed_at = store.get(demo.id).progress.step or 0
        worker.send_signal(signal.SIGKILL)
        worker.wait()
        assert [store.get(j.id) for j in others] == others
    worker = _start_worker(logs)
    try:
        _wait(lambda: store.get(demo.id).state.is_finished, timeout=1200)
    finally:
        worker.terminate()
        worker.wait()
    done = store.get(demo.id)
    assert (done.state, done.attempts) == (JobState.SUCCEEDED, KILLS + 1), done.reason
    report = json.loads((Path(done.run_dir) / "report.json").read_text())
    resumed = [step for step in _find(report, "resumed_from_step") if step]
    assert resumed and resumed[0] > 0
    print(f"kill loop: the last attempt resumed from step {resumed[0]} (killed at step {killed_at})")
