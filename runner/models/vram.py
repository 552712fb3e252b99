"""A GPU-memory estimate for a job's training, from the model's config and the job's settings.

Calibrated on peaks measured on an H100 (torch.cuda.max_memory_allocated, Unsloth 2026.10.9, LoRA r16 on
the 7 projections, sequence 2048; ../shared/FACTS.md and docs/benchmarks.md):

| shape, variant | measured | this estimate |
|---|---|---|
| Qwen2-1.5B bf16, batch 4 | 4.3 GiB | 4.4 GiB |
| Qwen2-1.5B bf16, batch 8 | 5.5 GiB | 5.1 GiB |
| Qwen2-1.5B QLoRA, batch 4 | 2.5 GiB | 2.6 GiB |
| Llama-8B QLoRA, batch 2 | 7.0 GiB | 7.3 GiB |
| Qwen2-1.5B bf16, batch 2 (mixed lengths) | 4.1 GiB | 4.0 GiB |
| Qwen2-1.5B bf16, batch 2, no checkpointing | 10.1 GiB | 10.2 GiB |

Its two activation constants were fitted to these six peaks, so agreement here is by construction; it is
a planning number, not a promise: other architectures, Hugging Face's unfused loss over a long
vocabulary, or packing change the activation term.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from types import SimpleNamespace
from typing import Any

from runner.core.disksize import Shape
from runner.models.resolve import base_files, known_config
from runner.spec.model import JobSpec

GIB = 2**30
_NF4_BYTES = 0.5625  # 4 bits plus block scales (double-quantized absmax)
_SAVED_BYTES = 2.2  # per token, per layer, per hidden unit, with (Unsloth's) gradient checkpointing
_NO_CHECKPOINT_FACTOR = 18.0  # activations kept for backward without checkpointing, measured
_FIXED = 0.2 * GIB  # CUDA context, workspace and allocator slack beyond the terms below


@dataclass(frozen=True)
class Estimate:
    """Estimated peak GPU memory, by part, in GiB."""

    weights: float
    lora: float
    activations: float
    total: float

    def describe(self, batch: int, tokens: int) -> str:
        """One line for ``tuneq validate``."""
        return (
            f"~{self.total:.1f} GiB GPU (weights {self.weights:.1f}, activations {self.activations:.1f}, "
            f"LoRA + optimizer {self.lora:.1f}) at batch {batch} x {tokens} tokens"
        )


def _params(config: Any) -> tuple[int, int, int]:
    """(embedding + head parameters, linear parameters in the layers, LoRA input+output width per layer)."""
    h, inter, layers = config.hidden_size, config.intermediate_size, config.num_hidden_layers
    heads = config.num_attention_heads
    kv = getattr(config, "num_key_value_heads", None) or heads
    head_dim = getattr(config, "head_dim", None) or h // heads
    embeddings = config.vocab_size * h * (1 if getattr(config, "tie_word_embeddings", False) else 2)
    attention = 2 * h * heads * head_dim + 2 * h * kv * head_dim
    linear = layers * (attention + 3 * h * inter)
    lora_width = layers * (2 * (h + heads * head_dim) + 2 * (h + kv * head_dim) + 3 * (h + inter))
    return embeddings, linear, lora_width


def model_shape(config: Any) -> Shape:
    """The weight matrices of a model with ``config`` (what its export sizes depend on)."""
    heads = config.num_attention_heads
    kv = getattr(config, "num_key_value_heads", None) or heads
    head_dim = getattr(config, "head_dim", None) or config.hidden_size // heads
    return Shape(
        vocab=config.vocab_size,
        hidden=config.hidden_size,
        intermediate=config.intermediate_size,
        layers=config.num_hidden_layers,
        q_width=heads * head_dim,
        kv_width=kv * head_dim,
        tied=bool(getattr(config, "tie_word_embeddings", False)),
    )


def estimate_for(
    config: Any, *, four_bit: bool, rank: int, optim: str, tokens: int, checkpointing: bool | str
) -> Estimate:
    """Peak training memory for a micro-batch of ``tokens`` tokens (padding included) on ``config``."""
    embeddings, linear, lora_width = _params(config)
    weight_bytes = 2 * embeddings + (_NF4_BYTES if four_bit else 2) * linear
    lora_params = rank * lora_width
    lora_bytes = lora_params * (4 + 4 + (2 if "8bit" in optim else 8))  # fp32 weight, grad, states
    saved = tokens * config.num_hidden_layers * config.hidden_size * _SAVED_BYTES
    if checkpointing is False:
        saved *= _NO_CHECKPOINT_FACTOR
    total = weight_bytes + lora_bytes + saved + _FIXED
    return Estimate(weight_bytes / GIB, lora_bytes / GIB, saved / GIB, total / GIB)


def estimate(config: Any, spec: JobSpec) -> Estimate:
    """Peak training memory for ``spec``'s own batch on a model with ``config`` (a transformers config).

    ``use_gradient_checkpointing = "auto"`` counts as on: the least the job needs.
    """
    checkpointing = spec.lora.use_gradient_checkpointing
    return estimate_for(
        config,
        four_bit=spec.model.load_in_4bit,
        rank=spec.lora.r,
        optim=spec.train.optim,
        tokens=spec.train.per_device_train_batch_size * spec.model.max_seq_length,
        checkpointing="unsloth" if checkpointing == "auto" else checkpointing,
    )


def model_config(base: str, revision: str | None = None) -> Any | None:
    """The base model's config.json as attributes (:func:`runner.models.resolve.base_files` finds it), else
    the shape tuneq knows for it; ``None`` when neither is there (nothing is built or downloaded)."""
    folder = base_files(base, revision)
    config: dict[str, Any] | None = None
    if folder is not None:
        try:
            loaded = json.loads((folder / "config.json").read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError, json.JSONDecodeError):
            loaded = None
        if isinstance(loaded, dict):
            config = loaded.get("text_config", loaded)  # multimodal wrappers keep the language model inside
    config = config if isinstance(config, dict) else known_config(base)
    needed = ("hidden_size", "intermediate_size", "num_hidden_layers", "num_attention_heads", "vocab_size")
    return SimpleNamespace(**config) if config and all(k in config for k in needed) else None
