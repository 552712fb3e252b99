"""Stage ``train``: Unsloth ``FastLanguageModel`` + TRL ``SFTTrainer`` on the tokenized rows → ``lora/``.

One code path for GPU and CPU: on a machine without a GPU Unsloth selects its own CPU backend (stock
transformers + PEFT + TRL; 8-bit optimizers become AdamW, 4-bit loads become 16-bit, with a message).
Labels come from the data stage (loss on answers only), so the trainer builds no masks of its own.
Resumes from the newest intact checkpoint in ``checkpoints/`` (:mod:`runner.pipeline.checkpoints`); SIGTERM
saves a checkpoint, then stops.
"""

from __future__ import annotations

import time
from typing import Any

from runner.core.atomic import replaced
from runner.core.events import Metric, Progress
from runner.dataset.templates import chat_template_for
from runner.models.vram import GIB
from runner.pipeline.checkpoints import newest_intact, no_partial_checkpoint, step_of
from runner.pipeline.context import StageContext
from runner.pipeline.sft import add_adapter, build_trainer, load_base, setup_unsloth_env


def run(ctx: StageContext) -> dict[str, Any]:
    """Train the adapter; write it (and the tokenizer with its chat template) to ``lora/``."""
    setup_unsloth_env(ctx)
    spec = ctx.spec
    model, tokenizer = load_base(spec)
    from datasets import load_from_disk

    train_ds = load_from_disk(str(ctx.run.data_train))
    eval_path = ctx.run.data_eval
    eval_ds = load_from_disk(str(eval_path)) if eval_path.exists() else None
    lengths = [min(len(ids), spec.model.max_seq_length) for ids in train_ds["input_ids"]]
    model, plan = add_adapter(spec, model, lengths)
    ctx.log(plan.describe())
    if (loading := _reset_gpu_peak()) is not None:  # progress events then show training's own peak
        ctx.log(f"loading the model peaked at {loading:.1f} GiB of GPU memory")
    trainer = build_trainer(
        model,
        tokenizer,
        spec=spec,
        plan=plan,
        output_dir=ctx.run.checkpoints,
        train_ds=train_ds,
        eval_ds=eval_ds,
        callbacks=[_progress_callback(ctx)],
    )
    resume = newest_intact(ctx.run.checkpoints, ctx.stage_key, ctx.log)
    resumed_from = step_of(resume) if resume else None
    if resume:
        ctx.log(f"resuming from {resume.name}")
    eval_before = _evaluate(trainer) if eval_ds is not None and resume is None else None
    trainer.add_callback(_stop_callback(ctx))
    with ctx.stop.checkpointing(), no_partial_checkpoint(ctx.run.checkpoints, ctx.log):
        result = trainer.train(resume_from_checkpoint=str(resume) if resume else None)
    if ctx.stop.requested:
        ctx.log(f"stopped at step {trainer.state.global_step} after saving a checkpoint")
    ctx.stop.raise_if_requested()
    eval_after = _evaluate(trainer) if eval_ds is not None else None
    tokenizer.chat_template = chat_template_for(spec.template, tokenizer)
    with replaced(ctx.run.lora) as tmp:
        model.save_pretrained(str(tmp))
        tokenizer.save_pretrained(str(tmp))
    ctx.handoff.model, ctx.handoff.tokenizer = model, tokenizer
    logged = trainer.state.log_history
    history = [e["loss"] for e in logged if "loss" in e]
    return {
        "steps": trainer.state.global_step,
        "train_loss": result.training_loss,
        "final_loss": history[-1] if history else None,
        "first_loss": history[0] if history else None,
        "eval_loss_before": eval_before,
        "eval_loss": eval_after,
        "resumed_from_step": resumed_from,
        "micro_batch": plan.per_device,
        "accumulation": plan.accumulation,
        "gradient_checkpointing": plan.checkpointing,
        # [step, loss] pairs for the loss curve that ships (ship/loss.png), thinned to at most CURVE_POINTS
        "loss_curve": _curve([(e["step"], e["loss"]) for e in logged if "loss" in e]),
        "eval_curve": _curve(
            ([] if eval_before is None else [(0, eval_before)])  # before training, which history leaves out
            + [(e["step"], e["eval_loss"]) for e in logged if "eval_loss" in e]
        ),
    }


CURVE_POINTS = 1000


def _curve(points: list[tuple[int, float]]) -> list[list[float]]:
    stride = max(1, -(-len(points) // CURVE_POINTS))
    kept = points[::stride] + ([points[-1]] if points and (len(points) - 1) % stride else [])
    return [[step, round(loss, 6)] for step, loss in kept]


def _evaluate(trainer: Any) -> float | None:
    metrics = trainer.evaluate()
    loss = metrics.get("eval_loss")
    return float(loss) if loss is not None else None


def _progress_callback(ctx: StageContext) -> Any:
    from transformers import TrainerCallback

    class ProgressEvents(TrainerCallback):
        """Turns the trainer's logs into ``progress`` and ``metric`` events."""

        def __init__(self) -> None:
            self.started = time.monotonic()
            self.first_step: int | None = None
            self.first_tokens = 0

        def on_log(
            self, args: Any, state: Any, control: Any, logs: dict[str, Any] | None = None, **kw: Any
        ) -> None:
            logs = logs or {}
            if "eval_loss" in logs:
                ctx.emit(Metric(step=state.global_step, eval_loss=logs["eval_loss"]))
                return
            if "loss" not in logs:
                return
            if self.first_step is None:
                self.first_step, self.first_tokens = state.global_step, state.num_input_tokens_seen
                self.started = time.monotonic()
            elapsed = time.monotonic() - self.started
            done = state.global_step - self.first_step
            rate = done / elapsed if elapsed > 0 and done > 0 else None
            tokens = state.num_input_tokens_seen - self.first_tokens
            ctx.emit(
                Progress(
                    step=state.global_step,
                    max_steps=state.max_steps,
                    epoch=round(state.epoch or 0, 4),
                    loss=logs["loss"],
                    lr=logs.get("learning_rate"),
                    grad_norm=logs.get("grad_norm"),
                    tokens_per_s=round(tokens / elapsed, 1) if elapsed > 0 and tokens else None,
                    eta_s=round((state.max_steps - state.global_step) / rate, 1) if rate else None,
                    mem_gib=_memory_gib(),
                )
            )

    return ProgressEvents()


def _reset_gpu_peak() -> float | None:
    """The GPU memory peak so far in GiB (loading, quantizing), then start counting afresh; None on CPU."""
    import torch

    if not torch.cuda.is_available():
        return None
    peak = torch.cuda.max_memory_allocated() / GIB
    torch.cuda.reset_peak_memory_stats()
    return peak


def _memory_gib() -> float:
    """Peak GPU memory, or this process's resident memory on CPU."""
    import torch

    if torch.cuda.is_available():
        return round(torch.cuda.max_memory_allocated() / GIB, 2)
    import psutil

    return round(psutil.Process().memory_info().rss / GIB, 2)


def _stop_callback(ctx: StageContext) -> Any:
    """After a stop signal: checkpoint at the end of the current step and stop training."""
    from transformers import TrainerCallback

    class StopOnSignal(TrainerCallback):
        def on_step_end(self, args: Any, state: Any, control: Any, **kw: Any) -> None:
            if ctx.stop.requested:
                control.should_save = True
                control.should_training_stop = True

    return StopOnSignal()
