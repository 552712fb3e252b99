"""The memory estimate that validate prints, against peaks measured on an H100 (docs/benchmarks.md)."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

import pytest

from runner.models.random import VOCAB_SIZE, build_r1_tokenizer, padded_vocab
from runner.models.vram import estimate, model_config
from runner.spec import parse_spec
from runner.spec.model import JobSpec

# The real models the peaks were measured on: the built-in shapes with their own vocabularies.
QWEN2_1_5B = SimpleNamespace(**{**vars(model_config("tuneq:random-r1-qwen-1.5b")), "vocab_size": 151_936})
LLAMA_8B = SimpleNamespace(**{**vars(model_config("tuneq:random-llama-8b")), "vocab_size": 128_256})


def job(batch: int, four_bit: bool = False, checkpointing: str = '"unsloth"') -> JobSpec:
    return parse_spec(
        f'name = "x"\n[model]\nbase = "m"\nload_in_4bit = {str(four_bit).lower()}\n[data]\nsource = "d.jsonl"\n'
        f"[lora]\nuse_gradient_checkpointing = {checkpointing}\n[train]\nper_device_train_batch_size = {batch}\n",
        "x.toml",
    )


@pytest.mark.parametrize(
    ("config", "spec", "measured_gib"),
    [
        (QWEN2_1_5B, job(4), 4.3),
        (QWEN2_1_5B, job(8), 5.5),
        (QWEN2_1_5B, job(4, four_bit=True), 2.5),
        (LLAMA_8B, job(2, four_bit=True), 7.0),
        (QWEN2_1_5B, job(2), 4.12),
        (QWEN2_1_5B, job(2, checkpointing="false"), 10.13),
    ],
)
def test_estimate_within_20_percent_of_measured_peaks(
    config: object, spec: JobSpec, measured_gib: float
) -> None:
    assert abs(estimate(config, spec).total / measured_gib - 1) <= 0.2


def test_config_of_a_builtin_shape_needs_no_build() -> None:
    config = model_config("tuneq:random-llama-8b")
    assert config is not None and config.hidden_size == 4096


def test_unknown_hub_model_is_not_estimated(monkeypatch: pytest.MonkeyPatch, tmp_path: object) -> None:
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_HOME", str(tmp_path))
    assert model_config("nobody/nothing-here") is None


def test_builtin_shapes_have_their_tokenizer_s_vocabulary(tmp_path: Path) -> None:
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(build_r1_tokenizer(tmp_path / "tok"))
    assert padded_vocab(len(tokenizer)) == VOCAB_SIZE == model_config("tuneq:random-llama-8b").vocab_size
