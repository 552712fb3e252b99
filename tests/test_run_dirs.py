"""Run directories: a job's directory is its own (never adopted from a killed submit or an earlier queue)
and its inputs are frozen at submit; ``tuneq run --run-dir`` resumes only the same job."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from conftest import JobFactory, runs_log
from test_cli_queue import tuneq
from test_worker import drive, ended, worker

from runner import commands
from runner.commands.staging import adopt_staged, stage_run_dir
from runner.core.events import JobEnd, read_events
from runner.core.jobstate import JobState
from runner.core.rundir import EXIT_BUSY, RunDir
from runner.pipeline.run import run_pipeline
from runner.store import Job, NewJob, Store


def owned_by(job: Job, path: Path) -> bool:
    """The job's run directory holds this job file's text and names this job."""
    run = RunDir(Path(job.run_dir))
    return run.job_toml.read_text() == path.read_text() and run.read_job_info()["job"] == str(job.id)


def test_submits_killed_mid_way_never_wedge_or_hand_their_directory_to_the_next_job(
    store: Store, make_job: JobFactory
) -> None:
    first, second = make_job("first", "steps=1"), make_job("second", "fail")
    runs = commands.runs_root(store)  # created by runs_root
    for attempt in range(40):  # kill -9 submits as they write under runs/, until one leaves a directory
        before = set(os.listdir(runs))
        submit = subprocess.Popen(
            [sys.executable, "-m", "runner", "submit", str(first)],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        while submit.poll() is None and set(os.listdir(runs)) == before:
            pass
        time.sleep((0, 0.0002, 0.0005, 0.001)[attempt % 4])
        submit.send_signal(signal.SIGKILL)
        submit.wait()
        if set(os.listdir(runs)) - {Path(job.run_dir).name for job in store.list_jobs()}:
            break
    else:
        pytest.fail("no kill landed while a submit wrote its run directory")
    (job,) = commands.submit(store, [second])
    assert owned_by(job, second)
    drive(store, worker(), ended(store, job.id))
    assert (store.get(job.id).state, store.get(job.id).reason) == (JobState.FAILED, "fake failure")


def test_a_new_queue_never_adopts_an_old_run_directory(home: Path, make_job: JobFactory) -> None:
    old, new = make_job("old"), make_job("new")
    with Store() as store:
        (before,) = commands.submit(store, [old])
    for name in os.listdir(home):  # the corrupt-database hint: move queue.db aside
        if name.startswith("queue.db"):
            os.rename(home / name, home / f"aside-{name}")
    with Store() as store:
        (after,) = commands.submit(store, [new])
    assert after.id == before.id
    assert after.run_dir != before.run_dir
    assert owned_by(after, new) and owned_by(before, old)


def test_a_crash_before_the_commit_leaves_a_directory_the_reused_id_does_not_adopt(
    store: Store, make_job: JobFactory
) -> None:
    path = make_job("a")
    (loaded,) = commands.load_all([path])

    def crash(job_id: int) -> Path:
        adopt_staged(stage_run_dir(loaded, commands.runs_root(store)), loaded, job_id)
        raise KeyboardInterrupt  # the process dies before the transaction commits

    new = NewJob("a", loaded.text, loaded.spec_hash, str(path))
    with pytest.raises(KeyboardInterrupt):
        store.submit(new, now=time.time(), prepare=crash)
    (job,) = commands.submit(store, [path])
    assert job.id == 1 and Path(job.run_dir).name == "1.2"
    assert owned_by(job, path)


def test_a_queued_jobs_data_is_frozen_at_submit(store: Store, make_job: JobFactory) -> None:
    path = make_job("a")
    (job,) = commands.submit(store, [path])
    source = path.parent / "data" / "medical-cot-tiny.jsonl"
    copy = Path(job.run_dir) / "input" / source.name
    frozen = copy.read_bytes()
    with source.open("ab") as data:  # the user edits the file while the job waits
        data.write(b'{"Question": "q", "Complex_CoT": "c", "Response": "r"}\n')
    assert copy.read_bytes() == frozen
    assert not os.path.samefile(copy, source)


def test_run_refuses_a_run_dir_holding_another_job_and_resumes_the_same(
    home: Path, make_job: JobFactory, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    first, other = make_job("first"), make_job("other", "steps=5")
    run_dir = tmp_path / "run"
    assert tuneq(capsys, "run", str(first), "--run-dir", str(run_dir))[0] == 0
    code, out, err = tuneq(capsys, "run", str(other), "--run-dir", str(run_dir))
    assert code == 2 and out == ""
    assert err.splitlines() == [
        f"tuneq run: run directory {run_dir} holds another job (its job file or data differ from "
        f"{other}): pass a new --run-dir, or delete {run_dir} to start over"
    ]
    assert (run_dir / "job.toml").read_text() == first.read_text()
    data = first.parent / "data" / "medical-cot-tiny.jsonl"
    shutil.copy(data, tmp_path / "saved.jsonl")
    data.write_bytes(data.read_bytes()[:-200])  # the same job file over changed data is another job too
    assert tuneq(capsys, "run", str(first), "--run-dir", str(run_dir))[0] == 2
    shutil.copy(tmp_path / "saved.jsonl", data)
    code, out, _ = tuneq(capsys, "run", str(first), "--run-dir", str(run_dir))
    assert code == 0 and f"run directory: {run_dir}" in out
    assert json.loads((run_dir / "attempts").read_text()) == 2  # the fake pipeline ran there twice


def test_run_prints_the_tested_file_job_end_names(
    home: Path, make_job: JobFactory, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    run_dir = tmp_path / "run"
    code, out, _ = tuneq(capsys, "run", str(make_job("q8", "tested=q8_0")), "--run-dir", str(run_dir))
    assert code == 0
    assert f"tested Q8_0: {run_dir}/gguf/q8-Q8_0.gguf" in out.splitlines()


def test_two_runs_given_one_run_dir_at_once_the_second_stops_with_one_line(
    home: Path, make_job: JobFactory, tmp_path: Path
) -> None:
    path, run_dir = make_job("twice", "steps=10 sleep=3"), tmp_path / "run"
    runs = [
        subprocess.Popen(
            [sys.executable, "-m", "runner", "run", str(path), "--run-dir", str(run_dir)],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for _ in range(2)
    ]
    results = sorted((p.wait(timeout=60), p.stderr.read() if p.stderr else "") for p in runs)
    (ok, _), (busy, err) = results
    assert (ok, busy) == (0, 2)
    assert len(err.splitlines()) == 1 and err.startswith(f"tuneq run: run directory {run_dir} is in use")
    assert err.rstrip().endswith("wait for it to end, or pass another --run-dir")
    assert runs_log(tmp_path) == ["run"]  # one pipeline ran there
    assert [isinstance(e, JobEnd) for e in read_events(run_dir / "events.jsonl")].count(True) == 1


def test_a_pipeline_whose_run_dir_is_taken_exits_busy_and_writes_no_event(tmp_path: Path) -> None:
    run = RunDir(tmp_path / "run")
    with run.locked():  # held through another open file: as another process holds it
        assert run_pipeline(run.root) == EXIT_BUSY
    assert not run.events.exists()
    with run.locked():  # the refused pipeline left the lock free
        pass


def test_a_queued_job_whose_run_dir_is_taken_is_interrupted_not_failed(
    store: Store, make_job: JobFactory, tmp_path: Path
) -> None:
    (job,) = commands.submit(store, [make_job("taken", retries=0)])
    with RunDir(Path(job.run_dir)).locked():  # a `tuneq run --run-dir` of that directory
        drive(store, worker(), ended(store, job.id))
    stopped = store.get(job.id)
    assert (stopped.state, stopped.reason) == (
        JobState.INTERRUPTED,
        "its run directory is in use by another pipeline (see log.txt)",
    )
    assert "is in use by another pipeline" in (Path(job.run_dir) / "log.txt").read_text()
    assert runs_log(tmp_path) == []


def test_run_says_in_one_line_which_run_settings_it_leaves_to_the_queue(
    home: Path, make_job: JobFactory, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = make_job("boxed")
    path.write_text(path.read_text() + 'backend = "docker"\ngpus = 0\n')
    code, _, err = tuneq(capsys, "run", str(path), "--run-dir", str(tmp_path / "run"))
    assert code == 0  # it ran, in a local process
    assert [line for line in err.splitlines() if "not used" in line] == [
        f'tuneq run: {path}: [run] backend = "docker", gpus = 0 not used: `tuneq run` runs a local process '
        "on the GPUs CUDA_VISIBLE_DEVICES shows; the queue honours them (`tuneq submit`)"
    ]
    code, _, err = tuneq(capsys, "run", str(make_job("plain")), "--run-dir", str(tmp_path / "plain"))
    assert code == 0 and "not used" not in err
