"""A stop signal ends the pipeline as stopped (exit 143, an error event, the report, ``job_end``), never as
failed, in training and in a stage that runs a child; the worker then records interrupted or cancelled.

The real ``run_pipeline`` runs in a real process group over cheap stand-in stages (tests/stop_pipeline.py).
"""

from __future__ import annotations

import importlib.util
import json
import shlex
import shutil
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path

import pytest
from conftest import DATA, ROOT, JobFactory
from test_worker import FAST, drive, ended, submit
from test_worker_process import spawn  # noqa: F401  (fixture: real worker processes)

from runner import commands
from runner.backends.base import Launch
from runner.backends.local import LocalBackend
from runner.commands.staging import prepare_run_dir
from runner.core.events import Error, JobEnd, Log, Progress, read_events
from runner.core.jobstate import JobState
from runner.core.rundir import RunDir
from runner.spec import load_spec
from runner.store import Store
from runner.worker import steps
from runner.worker.clock import SystemClock
from runner.worker.loop import Flags, run
from runner.worker.steps import WorkerRuntime

DEMO = ROOT / "jobs" / "demo-tiny.toml"
STOP_PIPELINE = [sys.executable, str(Path(__file__).with_name("stop_pipeline.py"))]


def wait_for(check: Callable[[], bool], timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.02)


@pytest.mark.parametrize("stage", ["train", "lora"])
def test_sigterm_ends_the_pipeline_stopped_with_its_report(
    home: Path, make_job: JobFactory, tmp_path: Path, stage: str
) -> None:
    loaded = load_spec(make_job("stop", f"wait-in={stage}"))
    run_dir = prepare_run_dir(loaded, tmp_path / "run", "7")
    backend = LocalBackend(STOP_PIPELINE)
    handle = backend.start(Launch("7", run_dir.root, loaded.spec))
    wait_for(lambda: (run_dir.root / f"{stage}.ready").exists())
    backend.stop(handle, grace_s=20)  # SIGTERM to the process group: the pipeline and its child
    outcome = backend.poll(handle)
    assert outcome is not None and outcome.exit_code == 143, (run_dir.log.read_text(), outcome)
    events = read_events(run_dir.events)
    errors = [e for e in events if isinstance(e, Error)]
    assert [(e.stage, e.cause) for e in errors] == [(stage, f"stopped by SIGTERM during the {stage} stage")]
    end = events[-1]
    assert isinstance(end, JobEnd) and (end.ok, end.exit_code, end.stopped) == (False, 143, True)
    report = json.loads(run_dir.report.read_text())
    assert report["failure"]["cause"] == f"stopped by SIGTERM during the {stage} stage"
    assert (run_dir.root / "checkpoint").exists() == (stage == "train")  # training checkpoints first


def stop_worker() -> WorkerRuntime:
    return WorkerRuntime.create(
        {"local": LocalBackend(STOP_PIPELINE)}, replace(FAST, grace_s=20), time.time()
    )


def test_a_worker_stop_while_a_child_runs_requeues_the_job(store: Store, make_job: JobFactory) -> None:
    job = submit(store, make_job("lora", "wait-in=lora", retries=1))
    w = stop_worker()
    drive(store, w, lambda: (RunDir(Path(store.get(job.id).run_dir)).root / "lora.ready").exists())
    run(store, SystemClock(), w, Flags(stops=1))
    stopped = store.get(job.id)
    assert (stopped.state, stopped.reason, stopped.retries_left) == (
        JobState.QUEUED,
        "its worker was stopped",
        0,
    )


def test_a_cancel_while_a_child_runs_cancels_the_job(store: Store, make_job: JobFactory) -> None:
    job = submit(store, make_job("lora", "wait-in=lora", retries=1))
    w = stop_worker()
    drive(store, w, lambda: (RunDir(Path(store.get(job.id).run_dir)).root / "lora.ready").exists())
    commands.cancel(store, job.id)
    drive(store, w, ended(store, job.id))
    cancelled = store.get(job.id)
    assert (cancelled.state, cancelled.reason) == (JobState.CANCELLED, "cancelled by the user")
    steps.shutdown(store, SystemClock(), w, force=True)


def test_a_cancelled_job_s_log_ends_saying_cancelled(
    store: Store,
    make_job: JobFactory,
    spawn,  # noqa: F811
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A worker process cancels the real ``run_pipeline`` in training: ``tuneq log`` shows the pipeline's
    ``job_end`` as stopped (it cannot tell why) and then the recorded end, cancelled, which the worker also
    wrote at the end of log.txt; nothing says failed."""
    monkeypatch.setenv("TUNEQ_PIPELINE_CMD", shlex.join(STOP_PIPELINE))
    (job,) = commands.submit(store, [make_job("cancel-me", "wait-in=train", retries=1)])
    spawn()
    run_dir = RunDir(Path(job.run_dir))
    wait_for(lambda: (run_dir.root / "train.ready").exists())
    commands.cancel(store, job.id)
    wait_for(lambda: store.get(job.id).state is JobState.CANCELLED)
    assert run_dir.log.read_text().splitlines()[-1].endswith(" -         job cancelled by the user")
    shown = subprocess.run(
        [sys.executable, "-m", "runner", "log", str(job.id)], capture_output=True, text=True, check=True
    ).stdout.splitlines()
    assert shown[-2].endswith("report    job stopped: stopped by SIGTERM during the train stage"), shown
    assert shown[-1].endswith(" -         job cancelled by the user"), shown
    assert not [line for line in shown if "failed" in line.lower()]


@pytest.mark.slow
@pytest.mark.timeout(1800)
@pytest.mark.skipif(importlib.util.find_spec("torch") is None, reason="needs the training stack")
def test_sigterm_during_real_training_saves_a_checkpoint_and_ends_stopped(home: Path, tmp_path: Path) -> None:
    (tmp_path / "demo" / "data").mkdir(parents=True)
    shutil.copy(DATA, tmp_path / "demo" / "data" / DATA.name)
    job = tmp_path / "demo" / "demo.toml"
    job.write_text(DEMO.read_text().replace("max_steps = 60", "max_steps = 2000"))
    loaded = load_spec(job)
    run_dir = prepare_run_dir(loaded, tmp_path / "run", "demo")
    backend = LocalBackend([sys.executable, "-m", "runner.pipeline"])
    handle = backend.start(Launch("demo", run_dir.root, loaded.spec))
    # a training step (the data stage reports progress too)
    wait_for(lambda: any(isinstance(e, Progress) and e.training for e in read_events(run_dir.events)), 1200)
    backend.stop(handle, grace_s=120)
    outcome = backend.poll(handle)
    assert outcome is not None and outcome.exit_code == 143, run_dir.log.read_text()[-3000:]
    events = read_events(run_dir.events)
    assert [e.cause for e in events if isinstance(e, Error)] == ["stopped by SIGTERM during the train stage"]
    assert any(isinstance(e, Log) and "after saving a checkpoint" in e.message for e in events)
    assert list(run_dir.checkpoints.glob("checkpoint-*/trainer_state.json"))
    assert isinstance(events[-1], JobEnd) and events[-1].stopped
    assert json.loads(run_dir.report.read_text())["failure"]["cause"].startswith("stopped by SIGTERM")
