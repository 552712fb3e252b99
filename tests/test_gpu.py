"""GPU checks (run on the H100 by `just gpu-smoke`; skipped without a CUDA GPU)."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

torch = pytest.importorskip("torch")
pytestmark = [pytest.mark.gpu, pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")]
ROOT = Path(__file__).resolve().parent.parent


def test_unsloth_selects_its_gpu_backend() -> None:
    import unsloth

    assert unsloth.DEVICE_TYPE == "cuda"


def test_padding_free_batches_give_the_padded_loss() -> None:
    """Padding-free training flattens a batch into one row; the loss must equal the padded batch's."""
    import unsloth  # noqa: F401
    from trl.trainer.sft_trainer import DataCollatorForLanguageModeling
    from unsloth import FastLanguageModel

    from runner.models.resolve import resolve_base

    model, tokenizer = FastLanguageModel.from_pretrained(
        resolve_base("tuneq:tiny-r1-qwen"), max_seq_length=256, load_in_4bit=False
    )
    FastLanguageModel.for_training(model)
    rows = [
        {"input_ids": list(range(1000, 1000 + n)), "labels": [-100] * 5 + list(range(1005, 1000 + n))}
        for n in (40, 90)
    ]
    losses = []
    for padding_free in (False, True):
        batch = DataCollatorForLanguageModeling(
            pad_token_id=tokenizer.pad_token_id, padding_free=padding_free
        )(rows)
        with torch.no_grad():
            out = model(**{k: v.cuda() for k, v in batch.items()})
        losses.append(float(out.loss))
    assert abs(losses[0] - losses[1]) < 2e-2 * max(1.0, abs(losses[0])), losses


def test_tiny_job_runs_every_stage_on_the_gpu(tmp_path: Path) -> None:
    llama_cpp = pytest.importorskip("llama_cpp")
    if not llama_cpp.llama_supports_gpu_offload():
        pytest.skip("llama-cpp-python was built without GPU offload")
    job = tmp_path / "job.toml"
    text = (ROOT / "jobs" / "gpu-random-r1-qwen-1.5b.toml").read_text()
    job.write_text(
        text.replace("tuneq:random-r1-qwen-1.5b", "tuneq:tiny-r1-qwen").replace(
            '"data/medical-cot-tiny.jsonl"', f'"{ROOT / "jobs/data/medical-cot-tiny.jsonl"}"'
        )
    )
    run_dir = tmp_path / "run"
    result = subprocess.run(
        [sys.executable, "-m", "runner", "run", str(job), "--run-dir", str(run_dir)],
        capture_output=True,
        text=True,
        cwd=ROOT,
        env=dict(os.environ),
        timeout=900,
    )
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    report = json.loads((run_dir / "report.json").read_text())
    assert report["ok"] and report["smoke"]["chat_template_embedded"]
    if out := os.environ.get("OUT"):
        shutil.copy(run_dir / "report.json", Path(out) / "gpu-test-report.json")
