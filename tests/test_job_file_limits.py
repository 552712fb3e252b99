"""Hostile job files through the real CLI: nesting thousands of levels deep, a symbolic-link loop as the data
source, smoke prompts that could never fit the smoke test's context or that are far too many. Each is one
short error naming the file, line or key, exit 2, never a traceback; a prompt too long in tokens (a count
only the tokenizer knows) fails the data stage, before any training."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import DATA

from runner.core.events import EventWriter
from runner.core.rundir import RunDir
from runner.pipeline.context import StageContext, StageFailed
from runner.pipeline.stages import data
from runner.spec import parse_spec
from runner.spec.model import MAX_SMOKE_PROMPTS

HEAD = (
    'name = "x"\n[model]\nbase = "tuneq:tiny-llama"\nmax_seq_length = 256\n'
    f'[data]\nsource = "data/{DATA.name}"\nformat = "columns"\n'
    '[data.columns]\nprompt = "Question"\nresponse = "Response"\n'
)


def validate(path: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "runner", "validate", str(path)],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def refused(done: subprocess.CompletedProcess[str], *words: str) -> None:
    assert done.returncode == 2, (done.returncode, done.stdout, done.stderr[-2000:])
    assert "Traceback" not in done.stderr, done.stderr[-3000:]
    assert len(done.stderr) < 2000, done.stderr[:2000]
    assert all(w in done.stderr for w in words), done.stderr


@pytest.fixture
def job(tmp_path: Path) -> Path:
    (tmp_path / "data").mkdir()
    shutil.copy(DATA, tmp_path / "data" / DATA.name)
    return tmp_path / "job.toml"


@pytest.mark.parametrize(
    "tail",
    [
        "[lora]\ntarget_modules = " + "[" * 600 + "]" * 600 + "\n",
        "[lora]\nbias = " + "{a = " * 600 + "1" + "}" * 600 + "\n",
        "[" + ".".join(["lora"] * 5000) + "]\nr = 1\n",
    ],
    ids=["arrays-600-deep", "inline-tables-600-deep", "header-5000-parts"],
)
def test_a_job_file_nested_thousands_deep_is_one_error(home: Path, job: Path, tail: str) -> None:
    job.write_text(HEAD + tail)
    refused(validate(job), str(job), "nest more than")


def test_a_data_source_that_is_a_symlink_loop_is_one_error(home: Path, job: Path) -> None:
    loop = job.parent / "data" / "loop.jsonl"
    loop.symlink_to(loop.name)
    job.write_text(HEAD.replace(DATA.name, "loop.jsonl"))
    refused(validate(job), "loop.jsonl", "symbolic link")


def test_a_smoke_prompt_no_context_can_hold_is_refused_at_validate(home: Path, job: Path) -> None:
    job.write_text(
        HEAD + '[[smoke.prompts]]\nprompt = "ok"\n[[smoke.prompts]]\nprompt = "' + "x" * 1_000_000 + '"\n'
    )
    refused(validate(job), f"{job}:14", "smoke.prompts.1.prompt", "1,000,000 characters", "max_seq_length")


def test_ten_thousand_smoke_prompts_are_refused_at_validate(home: Path, job: Path) -> None:
    job.write_text(HEAD + '[[smoke.prompts]]\nprompt = "q"\n' * 10_000)
    refused(validate(job), "smoke.prompts", f"at most {MAX_SMOKE_PROMPTS}")


def test_a_smoke_prompt_too_long_in_tokens_fails_the_data_stage_before_training(
    home: Path, job: Path
) -> None:
    words = " ".join(f"word{i}" for i in range(450))  # ~3.5k characters: under validate's bound (4,096)
    spec = parse_spec(HEAD + f'[[smoke.prompts]]\nprompt = "{words}"\n', str(job))
    run = RunDir(job.parent / "run")
    run.root.mkdir()
    ctx = StageContext(spec, run, {"job": "1", "source_file": str(job)}, EventWriter(run.events, "1"))
    with pytest.raises(
        StageFailed, match=r"smoke.prompts\[0\] is [\d,]+ tokens, more than .* \(256 tokens\)"
    ):
        data.run(ctx)
    assert not run.data_dir.exists()
