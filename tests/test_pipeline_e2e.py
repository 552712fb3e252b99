"""The real pipeline end to end on the tiny model: artifacts, GGUF metadata, smoke test, reuse, failure.

Runs ``tuneq run jobs/demo-tiny.toml`` once per session (a few minutes on two CPU cores).
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from runner.core.events import JobEnd, Progress, StageEnd, StageStart, read_events
from runner.core.stages import STAGE_NAMES

pytestmark = pytest.mark.slow
ROOT = Path(__file__).resolve().parent.parent
FAKE_TOKEN = "hf_" + "Q" * 34


def tuneq(*args: str, home: Path) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "TUNEQ_HOME": str(home), "HF_HUB_OFFLINE": "1", "HF_TOKEN": FAKE_TOKEN}
    return subprocess.run(
        [sys.executable, "-m", "runner", *args],
        capture_output=True,
        text=True,
        env=env,
        cwd=ROOT,
        timeout=1800,
    )


@pytest.fixture(scope="session")
def demo_run(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, subprocess.CompletedProcess[str]]:
    base = tmp_path_factory.mktemp("demo")
    run_dir = base / "run"
    result = tuneq("run", "jobs/demo-tiny.toml", "--run-dir", str(run_dir), home=base / "home")
    return run_dir, result


def gguf_fields(path: Path) -> dict[str, Any]:
    from gguf import GGUFReader

    reader = GGUFReader(str(path))
    out: dict[str, Any] = {}
    for name in (
        "general.file_type",
        "general.type",
        "tokenizer.chat_template",
        "tokenizer.ggml.eos_token_id",
    ):
        field = reader.fields.get(name)
        if field is not None:
            value = field.parts[field.data[0]]
            out[name] = bytes(value).decode() if value.dtype.kind == "u" and value.itemsize == 1 else value[0]
    return out


def test_demo_succeeds_and_prints_the_tested_file(demo_run: tuple[Path, Any]) -> None:
    run_dir, result = demo_run
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    q4 = run_dir / "gguf" / "demo-tiny-Q4_K_M.gguf"
    assert f"tested Q4_K_M: {q4}" in result.stdout
    for name in (
        "job.toml",
        "events.jsonl",
        "log.txt",
        "lora/adapter_model.safetensors",
        "merged/config.json",
        "gguf/demo-tiny-f16.gguf",
        "gguf/demo-tiny-lora-f16.gguf",
        "smoke.json",
        "report.json",
        "SHA256SUMS",
    ):
        assert (run_dir / name).exists(), name
    assert list((run_dir / "merged").glob("*.safetensors"))
    assert not list(run_dir.rglob("*.tmp")), "temporary files left behind"


def test_gguf_metadata(demo_run: tuple[Path, Any]) -> None:
    run_dir, _ = demo_run
    q4 = gguf_fields(run_dir / "gguf" / "demo-tiny-Q4_K_M.gguf")
    assert q4["general.file_type"] == 15  # LLAMA_FTYPE_MOSTLY_Q4_K_M
    template = q4["tokenizer.chat_template"]
    assert "<｜Assistant｜>" in template and re.search(r"\{%-?\s*generation", template) is None
    assert gguf_fields(run_dir / "gguf" / "demo-tiny-f16.gguf")["general.file_type"] == 1
    assert gguf_fields(run_dir / "gguf" / "demo-tiny-lora-f16.gguf")["general.type"] == "adapter"


def test_smoke_report_and_checksums(demo_run: tuple[Path, Any]) -> None:
    run_dir, _ = demo_run
    smoke = json.loads((run_dir / "smoke.json").read_text())
    assert smoke["ok"] and smoke["chat_template_embedded"]
    answer = smoke["results"][0]
    assert answer["finish_reason"] == "stop" and "</think>" in answer["answer"]
    report = json.loads((run_dir / "report.json").read_text())
    assert report["ok"] and report["versions"]["unsloth"] and report["versions"]["llama_cpp_python"]
    assert set(STAGE_NAMES) <= set(report["stages"])
    assert report["train"]["final_loss"] < report["train"]["first_loss"]
    assert report["data"]["eval_rows_from"].startswith("5 of 48 rows of split 'train' held out at random")
    check = subprocess.run(["sha256sum", "-c", "SHA256SUMS"], cwd=run_dir, capture_output=True, text=True)
    assert check.returncode == 0, check.stdout + check.stderr
    assert "gguf/demo-tiny-Q4_K_M.gguf: OK" in check.stdout


def test_events_tell_the_whole_story(demo_run: tuple[Path, Any]) -> None:
    run_dir, _ = demo_run
    events = read_events(run_dir / "events.jsonl")
    ends = [e.stage for e in events if isinstance(e, StageEnd) and e.ok]
    assert ends == list(STAGE_NAMES)
    progress = [e for e in events if isinstance(e, Progress)]
    trained = [e for e in progress if e.stage == "train"][-1]
    assert None not in (trained.step, trained.max_steps, trained.loss, trained.lr, trained.eta_s)
    assert {e.stage for e in progress} == set(STAGE_NAMES)  # every stage says how far it is
    for stage in (s for s in STAGE_NAMES if s != "train"):  # rows, bytes written, answers, files: done/total
        written = [e for e in progress if e.stage == stage]
        assert written and written[0].done == 0 and (written[0].total or 0) > 0, stage
        assert written[-1].done == written[-1].total and (written[-1].total or 0) > 0, stage
    assert isinstance(events[-1], JobEnd) and events[-1].ok


def test_the_ship_folder_shows_the_loss_curve(demo_run: tuple[Path, Any]) -> None:
    run_dir, _ = demo_run
    assert (run_dir / "ship" / "loss.png").read_bytes().startswith(b"\x89PNG")
    assert (
        "![training and eval loss against the step](loss.png)" in (run_dir / "ship" / "README.md").read_text()
    )
    train = json.loads((run_dir / "report.json").read_text())["train"]
    steps = [step for step, _ in train["loss_curve"]]
    assert steps[-1] == train["steps"] and len(steps) >= train["steps"] // 5 and train["eval_curve"]


def test_secrets_never_reach_the_run_directory(demo_run: tuple[Path, Any]) -> None:
    run_dir, _ = demo_run
    for path in run_dir.rglob("*"):
        if path.is_file() and path.stat().st_size < 50_000_000:
            assert FAKE_TOKEN.encode() not in path.read_bytes(), path


def test_rerun_reuses_every_stage(demo_run: tuple[Path, Any], tmp_path: Path) -> None:
    run_dir, _ = demo_run
    copy = tmp_path / "again"
    shutil.copytree(run_dir, copy)
    result = tuneq("run", "jobs/demo-tiny.toml", "--run-dir", str(copy), home=tmp_path / "home")
    assert result.returncode == 0, result.stderr[-2000:]
    events = read_events(copy / "events.jsonl")
    last_run = events[
        max(i for i, e in enumerate(events) if isinstance(e, StageStart) and e.stage == "data") :
    ]
    assert all(e.reused for e in last_run if isinstance(e, StageEnd))


def test_failed_expectation_fails_the_job_with_the_reason(demo_run: tuple[Path, Any], tmp_path: Path) -> None:
    """Only the smoke stage depends on [smoke]: changing it re-runs the test, not the training."""
    run_dir, _ = demo_run
    copy = tmp_path / "strict"
    shutil.copytree(run_dir, copy)
    job = copy / "job.toml"
    job.write_text(job.read_text().replace('must_contain = ["</think>"]', 'must_contain = ["NEVER SAID"]'))
    result = subprocess.run(
        [sys.executable, "-m", "runner.pipeline", str(copy)],
        capture_output=True,
        text=True,
        cwd=copy,
        env={**os.environ, "TUNEQ_HOME": str(tmp_path / "home")},
        timeout=600,
    )
    assert result.returncode == 1
    report = json.loads((copy / "report.json").read_text())
    assert not report["ok"] and "NEVER SAID" in report["failure"]["cause"]
    events = read_events(copy / "events.jsonl")
    reran = [e.stage for e in events[-12:] if isinstance(e, StageEnd) and not e.reused]
    assert reran == ["smoke"]


def test_retry_with_a_fixed_smoke_section_does_not_train_again(
    demo_run: tuple[Path, Any], tmp_path: Path
) -> None:
    """A job failed at its smoke test; ``tuneq retry ID --job FILE`` with the fix reruns smoke and after."""
    from runner.core.jobstate import JobState
    from runner.store import Store

    run_dir, _ = demo_run
    home, jobs = tmp_path / "home", tmp_path / "jobs"
    shutil.copytree(ROOT / "jobs", jobs)
    job_file = jobs / "demo-tiny.toml"
    assert tuneq("submit", str(job_file), home=home).returncode == 0
    with Store(home / "queue.db") as store:
        (job,) = store.list_jobs()
        shutil.copytree(run_dir, job.run_dir, dirs_exist_ok=True, ignore=shutil.ignore_patterns("job.json"))
        assert store.claim("w", now=0, lease_s=60) is not None
        store.transition(job.id, JobState.RUNNING, JobState.FAILED, now=0)
    job_file.write_text(job_file.read_text().replace("max_tokens = 160", "max_tokens = 150"))
    retried = tuneq("retry", str(job.id), "--job", str(job_file), home=home)
    assert retried.returncode == 0, retried.stderr
    assert "smoke changed: reuses data, train, lora, merged, gguf, quantize; runs smoke" in retried.stdout
    again = subprocess.run(
        [sys.executable, "-m", "runner.pipeline", job.run_dir],
        capture_output=True,
        text=True,
        cwd=job.run_dir,
        env={**os.environ, "TUNEQ_HOME": str(home)},
        timeout=600,
    )
    assert again.returncode == 0, again.stderr[-2000:]
    events = read_events(Path(job.run_dir) / "events.jsonl")
    retried = events[
        max(i for i, e in enumerate(events) if isinstance(e, StageStart) and e.stage == "data") :
    ]
    ran = [e.stage for e in retried if isinstance(e, StageEnd) and not e.reused]
    assert ran == ["smoke", "fidelity", "ship"]
