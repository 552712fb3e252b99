"""The demo job end to end: fidelity figures in report.json and eval.md, a verified ship folder."""

from __future__ import annotations

import json
import math
import os
import re
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from runner.commands.staging import prepare_run_dir
from runner.ship.files import verify_sums
from runner.ship.modelfile import modelfile, read_gguf_chat
from runner.spec import load_spec

ROOT = Path(__file__).resolve().parent.parent
pytestmark = pytest.mark.slow


def _pipeline(run: Path) -> int:
    return subprocess.run(
        [sys.executable, "-m", "runner.pipeline", str(run)], cwd=run, capture_output=True, timeout=900
    ).returncode


@pytest.fixture(scope="module")
def demo_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """jobs/demo-tiny.toml run once."""
    run = prepare_run_dir(
        load_spec(ROOT / "jobs" / "demo-tiny.toml"), tmp_path_factory.mktemp("demo"), "t"
    ).root
    assert _pipeline(run) == 0, (run / "log.txt").read_text()[-3000:]
    return run


def test_demo_report_eval_and_ship_folder(demo_run: Path) -> None:
    report = json.loads((demo_run / "report.json").read_text())
    fid = report["fidelity"]
    assert fid["ok"] and fid["format"] == {"checked": True, "problems": []}
    assert fid["eval_loss"]["improved"] and fid["eval_loss"]["after"] < fid["eval_loss"]["before"]
    files = {f["quant"]: f for f in fid["perplexity"]["files"]}
    assert list(files) == ["f16", "q8_0", "q4_k_m"] and fid["perplexity"]["max_increase"] == 0.02
    # the trainer's eval loss and the f16 GGUF score the same completion tokens
    assert files["f16"]["ppl"] == pytest.approx(math.exp(fid["eval_loss"]["after"]), rel=0.01)
    row = fid["answers"]["rows"][0]
    assert row["before"] and row["merged"]["finish_reason"] == "stop" and "</think>" in row["gguf"]["answer"]
    eval_md = (demo_run / "eval.md").read_text()
    assert "| gguf/demo-tiny-Q4_K_M.gguf |" in eval_md and "**Before (base model)**" in eval_md
    ship = demo_run / "ship"
    assert verify_sums(ship) == [] and report["ship"] == sorted(p.name for p in ship.iterdir())
    assert (ship / "demo-tiny-Q4_K_M.gguf").stat().st_ino == (
        demo_run / "gguf/demo-tiny-Q4_K_M.gguf"
    ).stat().st_ino
    chat = read_gguf_chat(ship / "demo-tiny-Q4_K_M.gguf")
    assert chat.num_ctx(256) == 2048  # the tiny model's own context, not the training rows' 256
    assert (ship / "Modelfile").read_text() == modelfile("demo-tiny-Q4_K_M.gguf", chat, 2048)
    card = (ship / "README.md").read_text()
    assert "base_model: tuneq:tiny-llama" in card and "| train.learning_rate | 0.003 |" in card
    assert "its perplexity on general text is around a million" in card  # the demo's card explains itself
    assert "ollama create demo-tiny -f Modelfile" in (ship / "commands.txt").read_text()


def test_a_limit_exceeded_fails_the_job_or_warns(demo_run: Path, tmp_path: Path) -> None:
    run = tmp_path / "run"
    shutil.copytree(demo_run, run, ignore=shutil.ignore_patterns("ship", "checkpoints"))
    job = run / "job.toml"
    job.write_text(job.read_text().replace("max_ppl_increase = 0.02", "max_ppl_increase = 0.00001"))
    assert _pipeline(run) == 1
    report = json.loads((run / "report.json").read_text())
    assert re.search(r"q4_k_m perplexity [\d.]+ is \+[\d.]+% over f16", report["failure"]["cause"])
    assert "(limit +0.001%" in report["failure"]["cause"]
    assert report["fidelity"]["ok"] is False and report["ship"] is None
    job.write_text(job.read_text().replace("[export]\n", '[export]\non_fidelity = "warn"\n'))
    assert _pipeline(run) == 0
    report = json.loads((run / "report.json").read_text())
    assert (
        report["fidelity"]["ok"] is False
        and report["ship"]
        and "PROBLEMS: q4_k_m perplexity" in (run / "eval.md").read_text()  # q8_0 may stay within +0.001%
    )


def segfault(gguf: Path, rows: object, gpu_layers: int = -1) -> None:
    """Stands in for the scorer in the spawned child: dies the way llama.cpp did on the H100."""
    os.kill(os.getpid(), signal.SIGSEGV)


def test_a_crashing_scorer_retries_on_the_cpu_then_fails_or_warns(
    demo_run: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from runner.core.events import EventWriter
    from runner.core.rundir import RunDir
    from runner.pipeline.context import StageContext
    from runner.pipeline.isolate import ChildCrashed
    from runner.pipeline.stages import fidelity
    from runner.spec import parse_spec

    monkeypatch.setattr(fidelity, "perplexities", segfault)  # real child processes, real crashes
    monkeypatch.setattr(fidelity, "perplexity_on_cpu", segfault)
    run = RunDir(demo_run)
    text = run.job_toml.read_text()
    events = tmp_path / "events.jsonl"

    def context(job_text: str) -> StageContext:
        spec = parse_spec(job_text, str(run.job_toml))
        return StageContext(spec, run, run.read_job_info(), EventWriter(events, "t"), "fidelity")

    with pytest.raises(ChildCrashed, match=r"perplexity of f16 on the CPU crashed .*SIGSEGV"):
        fidelity._perplexities(context(text))
    assert (
        "perplexity of f16 crashed inside llama.cpp (signal SIGSEGV); scoring f16 on the CPU"
        in events.read_text()
    )
    warned, general = fidelity._perplexities(
        context(text.replace("[export]\n", '[export]\non_fidelity = "warn"\n'))
    )
    assert general["files"] == [] and "on the CPU crashed" in general["skipped"]
    assert warned["files"] == [] and "on the CPU crashed" in warned["error"]
