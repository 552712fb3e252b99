"""A planted HF_TOKEN never reaches anything tuneq writes or prints: log.txt (through the local backend),
events (nested fields too), report.json, the database, ``validate``'s messages. Real CLI processes, a real
worker process, a real store."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

import pytest
from conftest import JobFactory

from runner.core.events import EventWriter
from runner.core.rundir import RunDir
from runner.pipeline.context import StageContext
from runner.pipeline.report import write_report
from runner.spec import parse_spec

PLANTED = "planted-secret-4f9c2e7a1b"  # not token-shaped: only the environment says it is a secret
SHAPED = "hf_" + "Q7xK2pLm9Rt4" * 3  # token-shaped: refused and scrubbed without being in the environment
HEX40 = "0123456789abcdef0123456789abcdef01234567"


def tuneq(*args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    """``python -m runner ARGS`` in its own process (the environment carries TUNEQ_HOME and HF_TOKEN)."""
    return subprocess.run(
        [sys.executable, "-m", "runner", *args], capture_output=True, text=True, timeout=timeout, check=False
    )


def every_file(root: Path) -> dict[Path, bytes]:
    return {p: p.read_bytes() for p in root.rglob("*") if p.is_file()}


def test_a_planted_token_reaches_no_file_and_no_output(
    home: Path, make_job: JobFactory, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("HF_TOKEN", PLANTED)
    assert tuneq("submit", str(make_job("leaky", "leak steps=2"))).returncode == 0
    with (tmp_path / "worker.log").open("wb") as log:
        worker = subprocess.Popen([sys.executable, "-m", "runner", "worker"], stdout=log, stderr=log)
    try:
        deadline = time.monotonic() + 60
        while json.loads(tuneq("status", "--json").stdout)["jobs"][0]["state"] != "succeeded":
            assert time.monotonic() < deadline, (tmp_path / "worker.log").read_text()
            time.sleep(0.2)
    finally:
        worker.terminate()
        worker.wait(timeout=30)
    run = RunDir(home / "runs" / "1")
    assert "Authorization: Bearer ***" in run.log.read_text()  # the output went through, scrubbed
    assert "retrying with token=***" in run.log.read_text()  # stderr too
    metric = next(e for e in map(json.loads, run.events.read_text().splitlines()) if e["type"] == "metric")
    assert (metric["authorization"], metric["tried"]) == ("Bearer ***", "***")
    printed = [tuneq(verb, "1") for verb in ("log", "show")]
    assert all(p.returncode == 0 and PLANTED not in p.stdout + p.stderr for p in printed)
    leaks = [p for p, data in every_file(tmp_path).items() if PLANTED.encode() in data]
    assert leaks == []  # log.txt, events.jsonl, queue.db (and its WAL), the worker's log


def test_report_json_scrubs_the_failure(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HF_TOKEN", PLANTED)
    spec = parse_spec('name = "x"\n[model]\nbase = "m"\n[data]\nsource = "d.jsonl"\n', "test")
    run = RunDir(tmp_path)
    ctx = StageContext(spec, run, {"job": "1"}, EventWriter(run.events, "1"))
    failure = {"cause": f"401 Unauthorized for token {PLANTED}", "stage": "train", "also": [SHAPED]}
    text = write_report(ctx, {}, {}, failure).read_text()
    assert PLANTED not in text and SHAPED not in text
    assert json.loads(text)["failure"]["cause"] == "401 Unauthorized for token ***"


def test_validate_never_echoes_a_secret_looking_value(home: Path, make_job: JobFactory) -> None:
    job = make_job("j")
    job.write_text(job.read_text().replace("[model]\n", f'[model]\nmax_seq_length = "{SHAPED}"\n'))
    done = tuneq("validate", str(job))
    assert done.returncode == 2
    assert "model.max_seq_length: looks like a secret" in done.stderr
    assert SHAPED not in done.stdout + done.stderr
    job.write_text(job.read_text().replace(f'"{SHAPED}"', f'"{HEX40}"'))  # a bare W&B key's shape
    done = tuneq("validate", str(job))
    assert done.returncode == 2 and HEX40 not in done.stderr
    text = job.read_text().replace(f'"{HEX40}"', "512")
    job.write_text(text.replace("[data.columns]\n", f'[data.columns]\n{SHAPED} = "Question"\n'))
    done = tuneq("validate", str(job))  # a token-shaped [data.columns] key, echoed by its validator
    assert "unknown role(s) in columns: ['***']" in done.stderr and SHAPED not in done.stderr


def test_a_commit_pin_is_a_revision_not_a_secret(home: Path, make_job: JobFactory) -> None:
    job = make_job("j")
    job.write_text(job.read_text().replace("[model]\n", f'[model]\nrevision = "{HEX40}"\n'))
    done = tuneq("validate", str(job))
    assert done.returncode == 0, done.stderr
    job.write_text(job.read_text().replace('description = ""', f'description = "{HEX40}"'))
    assert "description: looks like a secret" in tuneq("validate", str(job)).stderr  # elsewhere it is one


def test_the_local_backend_log_is_scrubbed_even_when_the_worker_dies(
    home: Path, make_job: JobFactory, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The scrubbing relay is its own process: a pipeline that outlives a kill -9 of its worker keeps
    writing to log.txt, scrubbed, and never dies of a broken pipe."""
    monkeypatch.setenv("HF_TOKEN", PLANTED)
    assert tuneq("submit", str(make_job("slow", "leak steps=20 sleep=3"))).returncode == 0
    worker = subprocess.Popen([sys.executable, "-m", "runner", "worker"], stdout=subprocess.DEVNULL)
    run = RunDir(home / "runs" / "1")
    deadline = time.monotonic() + 30
    while "Bearer" not in (run.log.read_text() if run.log.exists() else ""):
        assert time.monotonic() < deadline
        time.sleep(0.1)
    worker.kill()
    worker.wait()
    deadline = time.monotonic() + 30
    while '"job_end"' not in run.events.read_text():  # the orphaned pipeline finishes on its own
        assert time.monotonic() < deadline
        time.sleep(0.1)
    events = [json.loads(line) for line in run.events.read_text().splitlines()]
    assert events[-1]["ok"] is True
    assert PLANTED not in run.log.read_text()
