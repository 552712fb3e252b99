"""Micro-batches sized from free GPU memory: the same effective batch, the fewest micro-batches that fit."""

from __future__ import annotations

from runner.models.vram import GIB, model_config
from runner.pipeline.batchplan import MIN_MICRO_BATCH_TOKENS, BatchPlan, micro_batch_tokens, plan_batch
from runner.spec import parse_spec
from runner.spec.model import JobSpec

QWEN2_1_5B = model_config("tuneq:random-r1-qwen-1.5b")  # the built-in shape, read without building it
LENGTHS = [300, 1200, 2048, 700, 900, 1500, 400, 1800] * 4


def job(lora: str = "", train: str = "") -> JobSpec:
    return parse_spec(
        f'name = "x"\n[model]\nbase = "m"\n[data]\nsource = "d.jsonl"\n[lora]\n{lora}\n[train]\n{train}\n',
        "x.toml",
    )


def test_without_a_gpu_the_job_runs_its_own_batch() -> None:
    assert plan_batch(job(), QWEN2_1_5B, LENGTHS, None) == BatchPlan(2, 4, "unsloth")
    assert (
        plan_batch(job("use_gradient_checkpointing = false"), QWEN2_1_5B, LENGTHS, None).checkpointing
        is False
    )


def test_a_roomy_gpu_runs_the_effective_batch_at_once_without_checkpointing() -> None:
    plan = plan_batch(job(), QWEN2_1_5B, LENGTHS, 75 * GIB)
    assert (plan.per_device, plan.accumulation, plan.checkpointing) == (8, 1, False)
    assert plan.need_gib is not None and plan.need_gib < 0.8 * 75
    assert "micro-batch 8 x 1 steps, gradient checkpointing off" in plan.describe()


def test_less_memory_splits_the_batch_before_it_turns_checkpointing_on() -> None:
    """Checkpointing costs a second forward pass: a split is cheaper while micro-batches stay big."""
    plans = [plan_batch(job(), QWEN2_1_5B, LENGTHS, int(gib * GIB)) for gib in (75, 40, 20, 10, 3)]
    assert all(p.per_device * p.accumulation == 8 for p in plans)
    assert [(p.per_device, p.checkpointing) for p in plans] == [
        (8, False),
        (4, False),  # not 8 rows with checkpointing
        (2, False),
        (4, "unsloth"),  # 1 row (2k tokens) would leave the GPU waiting on the host: checkpoint instead
        (1, "unsloth"),
    ]
    assert micro_batch_tokens(LENGTHS, 2, flat=True, packing=False, max_seq_length=2048) >= (
        MIN_MICRO_BATCH_TOKENS
    )


def test_nothing_fits_gives_the_leanest_plan_and_says_so() -> None:
    plan = plan_batch(job(), QWEN2_1_5B, LENGTHS, GIB // 4)
    assert (plan.per_device, plan.accumulation, plan.checkpointing) == (1, 8, "unsloth")
    assert "more than fits" in plan.describe()


def test_settings_the_job_pins_are_kept() -> None:
    pinned = plan_batch(job(train="auto_batch = false"), QWEN2_1_5B, LENGTHS, 75 * GIB)
    assert (pinned.per_device, pinned.accumulation, pinned.checkpointing) == (2, 4, False)
    kept = plan_batch(job('use_gradient_checkpointing = "unsloth"'), QWEN2_1_5B, LENGTHS, 75 * GIB)
    assert (kept.per_device, kept.checkpointing) == (8, "unsloth")


def test_micro_batch_tokens_count_padding_the_way_batches_are_built() -> None:
    assert micro_batch_tokens(LENGTHS, 2, flat=True, packing=False, max_seq_length=2048) == 2048 + 2048
    assert micro_batch_tokens([100, 300, 200], 2, flat=True, packing=False, max_seq_length=2048) == 500
    assert micro_batch_tokens([100, 300, 200], 2, flat=False, packing=False, max_seq_length=2048) == 600
    assert micro_batch_tokens([100, 300, 200], 2, flat=False, packing=True, max_seq_length=2048) == 4096


def test_padding_free_is_the_default_unless_packing() -> None:
    assert job().train.flat_batches
    assert not job(train="packing = true").train.flat_batches
    assert not job(train="padding_free = false").train.flat_batches
