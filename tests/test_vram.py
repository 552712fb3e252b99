"""The memory estimate that validate prints, against peaks measured on an H100 (docs/benchmarks.md)."""

from __future__ import annotations

from types import SimpleNamespace

import pytest

from runner.spec import parse_spec
from runner.spec.model import JobSpec
from runner.vram import estimate, model_config

QWEN2_1_5B = SimpleNamespace(
    hidden_size=1536,
    intermediate_size=8960,
    num_hidden_layers=28,
    num_attention_heads=12,
    num_key_value_heads=2,
    vocab_size=151936,
    tie_word_embeddings=False,
)
LLAMA_8B = SimpleNamespace(
    hidden_size=4096,
    intermediate_size=14336,
    num_hidden_layers=32,
    num_attention_heads=32,
    num_key_value_heads=8,
    vocab_size=128256,
    tie_word_embeddings=False,
)


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
