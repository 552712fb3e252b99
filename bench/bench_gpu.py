"""GPU training throughput: the seeds' ways of training against tuneq's, on the same model, data and LoRA.

    just bench-gpu            (on a CUDA machine; see bench/gpu/README.md for the hub-less H100 recipe)

Variants, all LoRA r16 on the 7 projections, sequence length 2048, effective batch 8 (2 x 4):
  a  the seed-002 way: Hugging Face Trainer + PEFT, every row padded to 2048
  b  the seed-004 way: bare Unsloth + TRL SFTTrainer, adamw_8bit (pads to the longest row of a batch)
  c  tuneq's train stage with the job defaults (runner.pipeline.train)
  c+pf  tuneq with padding_free = true
  any variant + "-nogc": the same without gradient checkpointing (Unsloth's offloaded one by default)
Data: CoT-like rows of mixed length (200-2048 tokens, random ids). Each variant: warm-up steps, then
``--repeats`` timed blocks of ``--steps`` optimizer steps; the table shows the median block.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import statistics
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
os.environ.setdefault("UNSLOTH_DISABLE_STATISTICS", "1")
os.environ.setdefault("HF_HUB_OFFLINE", "1")
import torch  # noqa: E402
import unsloth  # noqa: E402,F401  (before transformers/trl, as Unsloth asks)

SEQ = 2048
TARGETS = ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]


def rows(n: int, vocab: int, seed: int = 0) -> list[dict[str, list[int]]]:
    """Mixed-length rows: a prompt (-100 labels) then a long answer, like CoT data."""
    rng = random.Random(seed)
    out = []
    for _ in range(n):
        length = rng.randint(200, SEQ)
        prompt = rng.randint(20, 120)
        ids = [rng.randrange(1000, vocab - 1000) for _ in range(length)]
        out.append({"input_ids": ids, "labels": [-100] * prompt + ids[prompt:]})
    return out


class Meter:
    """Counts tokens per batch (all and non-pad) through the collator, and times optimizer steps."""

    def __init__(self, collator: Any) -> None:
        self.collator = collator
        self.tokens: list[tuple[int, int]] = []

    def __call__(self, features: list[dict[str, Any]]) -> dict[str, Any]:
        batch = self.collator(features)
        ids = batch["input_ids"]
        mask = batch.get("attention_mask")
        useful = int(mask.sum()) if mask is not None else int(ids.numel())
        if "position_ids" in batch and mask is None:  # padding-free: one flat row, no pads
            useful = int(ids.numel())
        self.tokens.append((int(ids.numel()), useful))
        return batch


def step_times_callback(times: list[float]) -> Any:
    from transformers import TrainerCallback

    class Timer(TrainerCallback):  # type: ignore[misc]
        def on_step_begin(self, args: Any, state: Any, control: Any, **kw: Any) -> None:
            torch.cuda.synchronize()
            self.t = time.perf_counter()

        def on_step_end(self, args: Any, state: Any, control: Any, **kw: Any) -> None:
            torch.cuda.synchronize()
            times.append(time.perf_counter() - self.t)

    return Timer()


def summarize(
    name: str, times: list[float], meter: Meter, warmup: int, steps: int, repeats: int, accum: int
) -> dict[str, Any]:
    per_step = [
        (
            sum(a for a, _ in meter.tokens[i * accum : (i + 1) * accum]),
            sum(u for _, u in meter.tokens[i * accum : (i + 1) * accum]),
        )
        for i in range(len(times))
    ]
    blocks = []
    for r in range(repeats):
        lo, hi = warmup + r * steps, warmup + (r + 1) * steps
        seconds = sum(times[lo:hi])
        blocks.append(
            (sum(a for a, _ in per_step[lo:hi]) / seconds, sum(u for _, u in per_step[lo:hi]) / seconds)
        )
    all_tps = statistics.median(b[0] for b in blocks)
    useful_tps = statistics.median(b[1] for b in blocks)
    return {
        "variant": name,
        "tokens_per_s": round(all_tps),
        "useful_tokens_per_s": round(useful_tps),
        "blocks_useful": [round(b[1]) for b in blocks],
        "peak_gib": round(torch.cuda.max_memory_allocated() / 2**30, 2),
    }


def run_variant(
    variant: str, model_dir: str, data: list[dict[str, Any]], args: argparse.Namespace
) -> dict[str, Any]:
    from datasets import Dataset

    checkpointing = not variant.endswith("-nogc")
    kind = variant.removesuffix("-nogc")
    torch.cuda.empty_cache()
    torch.cuda.reset_peak_memory_stats()
    total = args.warmup + args.steps * args.repeats
    times: list[float] = []
    common = dict(
        per_device_train_batch_size=2,
        gradient_accumulation_steps=4,
        max_steps=total,
        learning_rate=2e-4,
        logging_steps=1000,
        save_strategy="no",
        report_to="none",
        bf16=True,
        output_dir=f"/tmp/bench-{variant}",
        disable_tqdm=True,
        seed=3407,
    )
    if kind == "a":
        from peft import LoraConfig, get_peft_model
        from transformers import AutoModelForCausalLM, Trainer, TrainingArguments, default_data_collator

        model = AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.bfloat16, device_map="cuda")
        if checkpointing:
            model.gradient_checkpointing_enable()
            model.enable_input_require_grads()
        model = get_peft_model(
            model, LoraConfig(r=16, lora_alpha=16, target_modules=TARGETS, task_type="CAUSAL_LM")
        )
        padded = [
            {
                "input_ids": r["input_ids"] + [0] * (SEQ - len(r["input_ids"])),
                "attention_mask": [1] * len(r["input_ids"]) + [0] * (SEQ - len(r["input_ids"])),
                "labels": r["labels"] + [-100] * (SEQ - len(r["labels"])),
            }
            for r in data
        ]
        meter = Meter(default_data_collator)
        trainer = Trainer(
            model=model,
            args=TrainingArguments(**common, optim="adamw_torch"),
            train_dataset=Dataset.from_list(padded),
            data_collator=meter,
            callbacks=[step_times_callback(times)],
        )
    else:
        from trl import SFTConfig, SFTTrainer
        from unsloth import FastLanguageModel

        model, tokenizer = FastLanguageModel.from_pretrained(
            model_dir, max_seq_length=SEQ, load_in_4bit=False
        )
        model = FastLanguageModel.get_peft_model(
            model,
            r=16,
            lora_alpha=16,
            target_modules=TARGETS,
            use_gradient_checkpointing="unsloth" if checkpointing else False,
            random_state=3407,
        )
        cfg = SFTConfig(**common, max_length=SEQ, optim="adamw_8bit", padding_free=kind == "c+pf")
        trainer = SFTTrainer(
            model=model,
            processing_class=tokenizer,
            train_dataset=Dataset.from_list(data),
            args=cfg,
            callbacks=[step_times_callback(times)],
        )
        meter = Meter(trainer.data_collator)
        trainer.data_collator = meter
    trainer.train()
    result = summarize(variant, times, meter, args.warmup, args.steps, args.repeats, 4)
    del trainer, model
    return result


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--model", default="tuneq:random-r1-qwen-1.5b")
    parser.add_argument("--variants", default="a,b,c+pf")
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--steps", type=int, default=4)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--out", type=Path)
    args = parser.parse_args()
    from runner.models.resolve import resolve_base

    model_dir = resolve_base(args.model)
    from transformers import AutoConfig

    vocab = AutoConfig.from_pretrained(model_dir).vocab_size
    n = 8 * (args.warmup + args.steps * args.repeats) + 8
    data = rows(n, vocab)
    results = []
    for variant in args.variants.split(","):
        results.append(run_variant(variant, model_dir, data, args))
        print(json.dumps(results[-1]), flush=True)
    print(f"\n{args.model}, seq {SEQ}, LoRA r16 x7, effective batch 8, median of {args.repeats} blocks")
    print(f"{'variant':<8}{'tok/s':>10}{'useful tok/s':>14}{'peak GiB':>10}")
    for r in results:
        print(f"{r['variant']:<8}{r['tokens_per_s']:>10}{r['useful_tokens_per_s']:>14}{r['peak_gib']:>10}")
    if args.out:
        args.out.write_text(
            json.dumps(
                {
                    "model": args.model,
                    "gpu": torch.cuda.get_device_name(),
                    "torch": torch.__version__,
                    "results": results,
                },
                indent=2,
            )
        )


if __name__ == "__main__":
    main()
