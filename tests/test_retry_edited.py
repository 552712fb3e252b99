"""``tuneq retry ID --job FILE``: a failed job runs again with an edited job file in its own run directory,
and the CLI says which stages run again and why (the real CLI, SQLite and run directory)."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

from conftest import JobFactory

from runner.core.jobstate import JobState
from runner.core.rundir import RunDir
from runner.store import Store


def tuneq(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "runner", *args], capture_output=True, text=True, timeout=60, check=False
    )


def failed_job(make_job: JobFactory) -> tuple[int, Path, RunDir]:
    """A submitted job that ran until its smoke stage and failed there (markers of the stages before)."""
    path = make_job("edit-me")
    assert tuneq("submit", str(path)).returncode == 0
    with Store() as store:
        job = max(store.list_jobs(), key=lambda j: j.id)
        assert store.claim("w", now=time.time(), lease_s=60).id == job.id
        store.transition(job.id, JobState.RUNNING, JobState.FAILED, now=time.time())
    run = RunDir(Path(job.run_dir))
    run.stages.mkdir()
    for stage in ("data", "train"):
        run.stage_marker(stage).write_text("{}")
    (run.checkpoints / "checkpoint-4").mkdir(parents=True)
    return job.id, path, run


def test_an_edited_smoke_section_reruns_only_the_stages_after_training(
    home: Path, make_job: JobFactory
) -> None:
    job_id, path, run = failed_job(make_job)
    path.write_text(path.read_text() + "\n[smoke]\nmax_tokens = 64\n")
    done = tuneq("retry", str(job_id), "--job", str(path))
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == (
        f"job {job_id} queued again with {path}: smoke changed: reuses data, train, lora, merged, gguf, "
        "quantize; runs smoke, fidelity, ship again"
    )
    with Store() as store:
        assert store.get(job_id).state is JobState.QUEUED
        assert "max_tokens = 64" in store.spec_text(job_id)
    assert "max_tokens = 64" in run.job_toml.read_text()  # what the pipeline reads
    assert run.stage_marker("data").exists() and (run.checkpoints / "checkpoint-4").exists()


def test_edited_data_reruns_everything_and_drops_the_old_checkpoints(
    home: Path, make_job: JobFactory
) -> None:
    job_id, path, run = failed_job(make_job)
    data = path.parent / "data" / "medical-cot-tiny.jsonl"
    data.write_text(data.read_text() + data.read_text().splitlines()[0] + "\n")
    done = tuneq("retry", str(job_id), "--job", str(path))
    assert done.returncode == 0, done.stderr
    assert "the data file changed: runs data, train, lora" in done.stdout
    assert not run.stage_marker("data").exists() and not run.checkpoints.exists()
    (copy,) = run.input_dir.iterdir()
    assert copy.read_text() == data.read_text()


def test_a_job_that_is_not_retryable_or_an_invalid_file_changes_nothing(
    home: Path, make_job: JobFactory
) -> None:
    path = make_job("queued")
    assert tuneq("submit", "--priority", "-1", str(path)).returncode == 0
    with Store() as store:
        (job,) = store.list_jobs()
    before = Path(job.run_dir, "job.toml").read_text()
    path.write_text(path.read_text() + "\n[smoke]\nmax_tokens = 64\n")
    done = tuneq("retry", str(job.id), "--job", str(path))
    assert done.returncode == 2 and done.stderr.strip() == (
        f"tuneq: job {job.id} is queued: only failed, interrupted or cancelled jobs can be retried"
    )
    assert Path(job.run_dir, "job.toml").read_text() == before

    job_id, path, run = failed_job(make_job)
    before = run.job_toml.read_text()
    path.write_text(path.read_text() + "\n[train]\nlearnig_rate = 1\n")
    done = tuneq("retry", str(job_id), "--job", str(path))
    assert done.returncode == 2 and "train.learnig_rate: unknown key" in done.stderr
    assert "Traceback" not in done.stderr and run.job_toml.read_text() == before
    assert tuneq("retry", str(job_id), "1", "--job", str(path)).returncode == 2
