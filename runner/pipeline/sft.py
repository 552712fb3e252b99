"""What tuneq trains with: Unsloth's model and adapter, TRL's ``SFTTrainer``, micro-batches sized to the GPU.

Shared by the train and merged stages and the GPU benchmark (bench/bench_gpu.py, variant c), so the benchmark measures
exactly what a job runs.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from runner.models.resolve import resolve_base
from runner.pipeline.batchplan import BatchPlan, plan_batch
from runner.pipeline.context import StageContext
from runner.spec.model import JobSpec


def setup_unsloth_env(ctx: StageContext) -> None:
    """Environment Unsloth reads at import: no stats ping, compile cache inside the run directory."""
    os.environ.setdefault("UNSLOTH_DISABLE_STATISTICS", "1")
    os.environ.setdefault("UNSLOTH_COMPILE_LOCATION", str(ctx.run.unsloth_cache))
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")


def load_base(spec: JobSpec) -> tuple[Any, Any]:
    """The base model and tokenizer through Unsloth (import order: unsloth before transformers/trl)."""
    import unsloth  # noqa: F401  (patches transformers/trl on import)
    from unsloth import FastLanguageModel

    dtype = None if spec.model.dtype == "auto" else spec.model.dtype
    model, tokenizer = FastLanguageModel.from_pretrained(
        model_name=resolve_base(spec.model.base),
        max_seq_length=spec.model.max_seq_length,
        dtype=dtype,
        load_in_4bit=spec.model.load_in_4bit,
        revision=spec.model.revision,
        trust_remote_code=spec.model.trust_remote_code,
    )
    return model, tokenizer


def add_adapter(spec: JobSpec, model: Any, lengths: list[int]) -> tuple[Any, BatchPlan]:
    """Plan the micro-batches for rows of ``lengths`` tokens, then add the LoRA adapter accordingly."""
    from unsloth import FastLanguageModel

    plan = plan_batch(spec, model.config, lengths, _free_gpu_bytes())
    lora = spec.lora
    model = FastLanguageModel.get_peft_model(
        model,
        r=lora.r,
        lora_alpha=lora.lora_alpha,
        lora_dropout=lora.lora_dropout,
        target_modules=list(lora.target_modules),
        bias=lora.bias,
        use_gradient_checkpointing=plan.checkpointing,
        random_state=lora.random_state,
        use_rslora=lora.use_rslora,
        max_seq_length=spec.model.max_seq_length,
    )
    return model, plan


def build_trainer(
    model: Any,
    tokenizer: Any,
    *,
    spec: JobSpec,
    plan: BatchPlan,
    output_dir: Path,
    train_ds: Any,
    eval_ds: Any,
    callbacks: list[Any],
) -> Any:
    """An ``SFTTrainer`` over tokenized rows (``input_ids`` + ``labels``) with the job's settings and plan."""
    from trl import SFTConfig, SFTTrainer

    _attention_for_changing_lengths()
    t = spec.train
    has_eval = eval_ds is not None and t.eval_steps is not None
    args = SFTConfig(
        output_dir=str(output_dir),
        per_device_train_batch_size=plan.per_device,
        per_device_eval_batch_size=plan.per_device,
        gradient_accumulation_steps=plan.accumulation,
        max_steps=t.max_steps,
        num_train_epochs=t.num_train_epochs,
        learning_rate=t.learning_rate,
        warmup_steps=t.warmup_ratio or t.warmup_steps,  # transformers 5: a float below 1 is a ratio
        lr_scheduler_type=t.lr_scheduler_type,
        optim=t.optim,
        weight_decay=t.weight_decay,
        max_grad_norm=t.max_grad_norm,
        seed=t.seed,
        logging_steps=t.logging_steps,
        save_strategy="steps",
        save_steps=t.save_steps,
        save_total_limit=t.save_total_limit,
        eval_strategy="steps" if has_eval else "no",
        eval_steps=t.eval_steps if has_eval else None,
        max_length=spec.model.max_seq_length,
        packing=t.packing,
        padding_free=t.flat_batches,
        dataset_num_proc=t.dataset_num_proc,
        report_to=t.report_to,
        include_num_input_tokens_seen="non_padding",
        disable_tqdm=True,
        logging_first_step=True,
    )
    return SFTTrainer(
        model=model,
        processing_class=tokenizer,
        train_dataset=train_ds,
        eval_dataset=eval_ds,
        args=args,
        callbacks=callbacks,
    )


def _free_gpu_bytes() -> int | None:
    """Free memory on the training GPU, or None without one."""
    import torch

    return torch.cuda.mem_get_info()[0] if torch.cuda.is_available() else None


def _attention_for_changing_lengths() -> None:
    """Keep attention off cuDNN on the GPU: it builds a plan for every new sequence length, and
    batches of real data change length every step (measured on the H100: docs/benchmarks.md)."""
    import torch

    if torch.cuda.is_available():
        torch.backends.cuda.enable_cudnn_sdp(False)
