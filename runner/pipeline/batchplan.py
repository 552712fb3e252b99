"""Micro-batches sized from free GPU memory (``[train] auto_batch``, ``use_gradient_checkpointing = "auto"``).

A LoRA step on a small model does not fill an H100: at 2 rows per micro-batch most of the step is the host
launching kernels (docs/benchmarks.md). So the job's effective batch (per-device x accumulation) runs in
the fewest micro-batches whose estimated peak fits in the memory left after the weights are loaded.
Gradient checkpointing recomputes the forward pass (about +50% FLOPs with a frozen base), which costs more
than a second micro-batch once each holds a few thousand tokens: with ``"auto"`` the plan first splits the
batch without checkpointing, down to micro-batches of ``MIN_MICRO_BATCH_TOKENS``, and only then turns
checkpointing on. The effective batch, and with it the optimisation, is the job's own.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from runner.models.vram import GIB, estimate_for
from runner.spec.model import JobSpec

HEADROOM = 0.8  # share of the free memory a plan may fill: the estimate is a planning number, not a bound
# Big micro-batches also hold the LM head's fp32 logits for the loss: the estimate, fitted at 2 rows, does not
# show them. On the H100 an 8B QLoRA micro-batch of ~10k tokens peaked 11.7 GiB above its weights where
# the estimate alone says 4.7 (docs/benchmarks.md); this allowance covers that.
LOGITS_BYTES = 4
# Below this many tokens a micro-batch leaves the GPU waiting on the host (docs/benchmarks.md): split no
# further to avoid checkpointing.
MIN_MICRO_BATCH_TOKENS = 4096


@dataclass(frozen=True)
class BatchPlan:
    """How the trainer runs a job's effective batch."""

    per_device: int
    accumulation: int
    checkpointing: bool | str
    need_gib: float | None = None  # estimated memory beyond the loaded weights
    free_gib: float | None = None  # free GPU memory after loading the weights

    def describe(self) -> str:
        """One line for the train stage's log."""
        ck = {False: "off", True: "on", "unsloth": "on (offloaded)"}.get(
            self.checkpointing, self.checkpointing
        )
        line = f"micro-batch {self.per_device} x {self.accumulation} steps, gradient checkpointing {ck}"
        if self.need_gib is not None and self.free_gib is not None:
            line += f" (needs ~{self.need_gib:.1f} of {self.free_gib:.1f} GiB free)"
            if self.need_gib > HEADROOM * self.free_gib:
                line += ": more than fits, it may run out of memory; lower max_seq_length or the batch"
        return line


def micro_batch_tokens(
    lengths: list[int], rows: int, *, flat: bool, packing: bool, max_seq_length: int
) -> int:
    """Tokens in the largest micro-batch of ``rows`` rows, padding included."""
    if packing or not lengths:
        return rows * max_seq_length
    longest = sorted(lengths, reverse=True)[:rows]
    return sum(longest) if flat else rows * longest[0]


def plan_batch(spec: JobSpec, config: Any | None, lengths: list[int], free_bytes: int | None) -> BatchPlan:
    """The plan for ``spec`` given its rows' token counts and the GPU memory free after loading the weights.

    Without a GPU (``free_bytes`` None) or a readable config, the job's own settings run unchanged
    (``"auto"`` checkpointing then means Unsloth's offloaded checkpointing).
    """
    t, wanted = spec.train, spec.lora.use_gradient_checkpointing
    options: list[bool | str] = [False, "unsloth"] if wanted == "auto" else [wanted]
    own = BatchPlan(t.per_device_train_batch_size, t.gradient_accumulation_steps, options[-1])
    if free_bytes is None or config is None:
        return own
    effective = t.per_device_train_batch_size * t.gradient_accumulation_steps
    sizes = [n for n in range(effective, 0, -1) if effective % n == 0] if t.auto_batch else [own.per_device]
    tokens = {
        rows: micro_batch_tokens(
            lengths, rows, flat=t.flat_batches, packing=t.packing, max_seq_length=spec.model.max_seq_length
        )
        for rows in sizes
    }
    # splitting before checkpointing while micro-batches stay big, then the fewest micro-batches that fit
    split_first = [(rows, options[0]) for rows in sizes if tokens[rows] >= MIN_MICRO_BATCH_TOKENS]
    need = 0.0
    for rows, checkpointing in [*split_first, *((rows, ck) for rows in sizes for ck in options)]:
        est = estimate_for(
            config,
            four_bit=spec.model.load_in_4bit,
            rank=spec.lora.r,
            optim=t.optim,
            tokens=tokens[rows],
            checkpointing=checkpointing,
        )
        need = (est.total - est.weights) * GIB + tokens[rows] * config.vocab_size * LOGITS_BYTES
        if need <= HEADROOM * free_bytes:
            return BatchPlan(rows, effective // rows, checkpointing, need / GIB, free_bytes / GIB)
    return BatchPlan(sizes[-1], effective // sizes[-1], options[-1], need / GIB, free_bytes / GIB)
