"""GPU training throughput: the seeds' ways of training against tuneq's, on the same model, data and LoRA.

    just bench-gpu            (on a CUDA machine; see bench/gpu/README.md for the hub-less H100 recipe)

A variant is a base and options joined by "+", e.g. ``b+pf+bs8``:
  a   the seed-002 way: Hugging Face Trainer + PEFT, every row padded to 2048
  b   the seed-004 way: bare Unsloth + TRL SFTTrainer, adamw_8bit (pads to the longest row of a batch)
  c   tuneq's train stage with the job defaults (runner.pipeline.sft)
  u   a plain loop over Unsloth's model (no trainer): forward with labels, backward, 8-bit AdamW
options:
  pf / padded   padding-free or padded batches    bsN      N rows per micro-batch, 8 / N accumulation steps
  gc / nogc     with or without checkpointing     full     every row 2048 tokens long
  own           loss through the model's forward, not TRL's fused LM head (b)
  nocudnn       attention kept off cuDNN (c does this itself)
  4bit          QLoRA: the base loaded in 4 bits (a: bitsandbytes + PEFT's k-bit preparation)
(c without bsN / gc / nogc / pf / padded sizes them as a job would: from free memory, padding-free.)
All: LoRA r16 on the 7 projections, sequence length 2048, effective batch 8 rows, bf16.
Data: CoT-like rows of mixed length (200-2048 tokens, random ids). Each variant: warm-up steps, then
``--repeats`` timed blocks of ``--steps`` optimizer steps; the table shows the median block.
``--profile`` traces the last warm-up step of each variant and writes where its time went.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import statistics
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
os.environ.setdefault("UNSLOTH_DISABLE_STATISTICS", "1")
os.environ.setdefault("HF_HUB_OFFLINE", "1")
torch: Any = None  # imported in the child process that runs a variant (see run_one)

SEQ = 2048
ROWS_PER_STEP = 8
TARGETS = ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]


OPTIONS = ("pf", "padded", "own", "full", "gc", "nogc", "nocudnn", "4bit")


@dataclass(frozen=True)
class Variant:
    """A parsed variant name: its base and options."""

    name: str
    base: str
    opts: tuple[str, ...]

    @classmethod
    def parse(cls, name: str) -> Variant:
        """``b+pf+bs8`` → Variant(base='b', opts=('pf', 'bs8'))."""
        base, *opts = name.split("+")
        if base not in ("a", "b", "c", "u"):
            raise SystemExit(f"unknown variant base {base!r} in {name!r}")
        for opt in opts:
            if not (opt in OPTIONS or (opt.startswith("bs") and opt[2:].isdigit())):
                raise SystemExit(f"unknown option {opt!r} in {name!r}")
        variant = cls(name, base, tuple(opts))
        if ROWS_PER_STEP % variant.batch:
            raise SystemExit(f"batch {variant.batch} does not divide {ROWS_PER_STEP}")
        return variant

    @property
    def pinned_batch(self) -> bool:
        return any(o.startswith("bs") for o in self.opts)

    @property
    def batch(self) -> int:
        return next((int(o[2:]) for o in self.opts if o.startswith("bs")), 2)

    @property
    def accum(self) -> int:
        return ROWS_PER_STEP // self.batch

    @property
    def checkpointing(self) -> bool:
        return "nogc" not in self.opts

    @property
    def four_bit(self) -> bool:
        return "4bit" in self.opts


def rows(n: int, vocab: int, full: bool, seed: int = 0) -> list[dict[str, list[int]]]:
    """Rows of a prompt (-100 labels) then a long answer, like CoT data: mixed lengths unless ``full``."""
    rng = random.Random(seed)
    out = []
    for _ in range(n):
        length = SEQ if full else rng.randint(200, SEQ)
        prompt = rng.randint(20, 120)
        ids = [rng.randrange(1000, vocab - 1000) for _ in range(length)]
        out.append({"input_ids": ids, "labels": [-100] * prompt + ids[prompt:]})
    return out


def count(batch: dict[str, Any]) -> tuple[int, int]:
    """(tokens in the batch tensor, non-pad tokens)."""
    ids = batch["input_ids"]
    mask = batch.get("attention_mask")
    return int(ids.numel()), int(mask.sum()) if mask is not None else int(ids.numel())


class Meter:
    """Counts tokens per micro-batch through the collator."""

    def __init__(self, collator: Any) -> None:
        self.collator = collator
        self.tokens: list[tuple[int, int]] = []

    def __call__(self, features: list[dict[str, Any]]) -> dict[str, Any]:
        batch = self.collator(features)
        self.tokens.append(count(batch))
        return batch


class StepClock:
    """Times optimizer steps (CUDA-synchronized) and profiles one of them."""

    def __init__(self, profile_step: int | None) -> None:
        self.times: list[float] = []
        self.profile_step = profile_step
        self.profiler: Any = None
        self.profiled_wall = 0.0

    def begin(self) -> None:
        torch.cuda.synchronize()
        if len(self.times) == self.profile_step:
            from torch.profiler import ProfilerActivity, profile

            self.profiler = profile(activities=[ProfilerActivity.CPU, ProfilerActivity.CUDA])
            self.profiler.__enter__()
        self.t = time.perf_counter()

    def end(self) -> None:
        torch.cuda.synchronize()
        elapsed = time.perf_counter() - self.t
        if self.profiler is not None and len(self.times) == self.profile_step:
            self.profiler.__exit__(None, None, None)
            self.profiled_wall = elapsed
        self.times.append(elapsed)

    def callback(self) -> Any:
        from transformers import TrainerCallback

        clock = self

        class Timer(TrainerCallback):  # type: ignore[misc]
            def on_step_begin(self, args: Any, state: Any, control: Any, **kw: Any) -> None:
                clock.begin()

            def on_step_end(self, args: Any, state: Any, control: Any, **kw: Any) -> None:
                clock.end()

        return Timer()

    def profile_report(self, name: str) -> str:
        """Where the profiled step's time went: GPU-busy share and the top operators."""
        if self.profiler is None:
            return ""
        averages = self.profiler.key_averages()
        from torch.autograd import DeviceType

        gpu_us = sum(e.self_device_time_total for e in averages if e.device_type == DeviceType.CUDA)
        busy = gpu_us / 1e6 / self.profiled_wall if self.profiled_wall else 0.0
        head = (
            f"== {name}: profiled step {self.profiled_wall:.3f} s wall (profiler on), "
            f"GPU kernels {gpu_us / 1e6:.3f} s = {busy:.0%} busy\n"
        )
        by_gpu = averages.table(sort_by="self_device_time_total", row_limit=18, max_name_column_width=70)
        by_cpu = averages.table(sort_by="self_cpu_time_total", row_limit=12, max_name_column_width=70)
        return head + by_gpu + "\n" + by_cpu + "\n"


def summarize(
    variant: Variant, clock: StepClock, tokens: list[tuple[int, int]], accum: int, args: Any
) -> dict[str, Any]:
    """Median block of tokens/s (all and useful) and the peak memory."""
    per_step = [
        (
            sum(a for a, _ in tokens[i * accum : (i + 1) * accum]),
            sum(u for _, u in tokens[i * accum : (i + 1) * accum]),
        )
        for i in range(len(clock.times))
    ]
    blocks = []
    for r in range(args.repeats):
        lo, hi = args.warmup + r * args.steps, args.warmup + (r + 1) * args.steps
        seconds = sum(clock.times[lo:hi])
        blocks.append(
            (sum(a for a, _ in per_step[lo:hi]) / seconds, sum(u for _, u in per_step[lo:hi]) / seconds)
        )
    return {
        "variant": variant.name,
        "tokens_per_s": round(statistics.median(b[0] for b in blocks)),
        "useful_tokens_per_s": round(statistics.median(b[1] for b in blocks)),
        "blocks_useful": [round(b[1]) for b in blocks],
        "step_s": [round(t, 3) for t in clock.times],
        "peak_gib": round(torch.cuda.max_memory_allocated() / 2**30, 2),
    }


def common_args(variant: Variant, total_steps: int) -> dict[str, Any]:
    return dict(
        per_device_train_batch_size=variant.batch,
        gradient_accumulation_steps=variant.accum,
        max_steps=total_steps,
        learning_rate=2e-4,
        logging_steps=1000,
        save_strategy="no",
        report_to="none",
        bf16=True,
        output_dir=f"/tmp/bench-{variant.name}",
        disable_tqdm=True,
        seed=3407,
    )


def hf_peft_trainer(variant: Variant, model_dir: str, data: list[dict[str, Any]], clock: StepClock) -> Any:
    """(a): Hugging Face Trainer + PEFT on rows padded to the full length."""
    from datasets import Dataset
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM, Trainer, TrainingArguments, default_data_collator

    if variant.four_bit:  # the seeds' QLoRA: bitsandbytes NF4 + PEFT's k-bit preparation
        from peft import prepare_model_for_kbit_training
        from transformers import BitsAndBytesConfig

        nf4 = BitsAndBytesConfig(
            load_in_4bit=True,
            bnb_4bit_quant_type="nf4",
            bnb_4bit_compute_dtype=torch.bfloat16,
            bnb_4bit_use_double_quant=True,
        )
        model = AutoModelForCausalLM.from_pretrained(model_dir, quantization_config=nf4, device_map="cuda")
        model = prepare_model_for_kbit_training(model, use_gradient_checkpointing=variant.checkpointing)
    else:
        model = AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.bfloat16, device_map="cuda")
        if variant.checkpointing:
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
    return Trainer(
        model=model,
        args=TrainingArguments(**common_args(variant, len(data) // ROWS_PER_STEP), optim="adamw_torch"),
        train_dataset=Dataset.from_list(padded),
        data_collator=Meter(default_data_collator),
        callbacks=[clock.callback()],
    )


def unsloth_model(variant: Variant, model_dir: str) -> tuple[Any, Any]:
    from unsloth import FastLanguageModel

    model, tokenizer = FastLanguageModel.from_pretrained(
        model_dir, max_seq_length=SEQ, load_in_4bit=variant.four_bit
    )
    model = FastLanguageModel.get_peft_model(
        model,
        r=16,
        lora_alpha=16,
        target_modules=TARGETS,
        use_gradient_checkpointing="unsloth" if variant.checkpointing else False,
        random_state=3407,
    )
    return model, tokenizer


def sft_trainer(variant: Variant, model_dir: str, data: list[dict[str, Any]], clock: StepClock) -> Any:
    """(b): bare Unsloth + TRL's SFTTrainer, as seed 004 builds it."""
    from datasets import Dataset
    from trl import SFTConfig, SFTTrainer

    model, tokenizer = unsloth_model(variant, model_dir)
    cls = SFTTrainer
    if "own" in variant.opts:

        class OwnLoss(SFTTrainer):  # type: ignore[misc,valid-type]
            def compute_loss(self, model: Any, inputs: Any, return_outputs: bool = False, **kw: Any) -> Any:
                n = kw.get("num_items_in_batch")
                outputs = model(**inputs, use_cache=False, **({"num_items_in_batch": n} if n else {}))
                return (outputs.loss, outputs) if return_outputs else outputs.loss

        cls = OwnLoss
    cfg = SFTConfig(
        **common_args(variant, len(data) // ROWS_PER_STEP),
        max_length=SEQ,
        optim="adamw_8bit",
        padding_free="pf" in variant.opts,
    )
    trainer = cls(
        model=model,
        processing_class=tokenizer,
        train_dataset=Dataset.from_list(data),
        args=cfg,
        callbacks=[clock.callback()],
    )
    trainer.data_collator = Meter(trainer.data_collator)
    return trainer


def tuneq_spec(variant: Variant, model_dir: str) -> Any:
    """A job with tuneq's defaults; ``bsN``, ``pf``/``padded`` and ``gc``/``nogc`` pin what the defaults choose."""
    from runner.spec import parse_spec

    lora = {"gc": '"unsloth"', "nogc": "false"}
    train = {"padded": "padding_free = false", "pf": "padding_free = true"}
    lines = [
        f'name = "bench"\n[model]\nbase = "{model_dir}"\nmax_seq_length = {SEQ}\n[data]\nsource = "d.jsonl"'
    ]
    lines += ["[lora]"] + [f"use_gradient_checkpointing = {lora[o]}" for o in variant.opts if o in lora]
    lines += ["[train]", "logging_steps = 1000", "save_steps = 100000"]
    lines += [train[o] for o in variant.opts if o in train]
    if variant.pinned_batch:
        lines += [f"per_device_train_batch_size = {variant.batch}", "auto_batch = false"]
    lines.append(f"gradient_accumulation_steps = {variant.accum}")
    return parse_spec("\n".join(lines) + "\n", "bench.toml")


def tuneq_trainer(variant: Variant, model_dir: str, data: list[dict[str, Any]], clock: StepClock) -> Any:
    """(c): tuneq's own trainer, built as the train stage builds it, with a job's defaults."""
    from datasets import Dataset

    from runner.pipeline.sft import add_adapter, build_trainer, load_base

    spec = tuneq_spec(variant, model_dir)
    model, tokenizer = load_base(spec)
    model, plan = add_adapter(spec, model, [len(r["input_ids"]) for r in data])
    print(f"{variant.name}: {plan.describe()}", flush=True)
    trainer = build_trainer(
        model,
        tokenizer,
        spec=spec.model_copy(
            update={"train": spec.train.model_copy(update={"max_steps": len(data) // ROWS_PER_STEP})}
        ),
        plan=plan,
        output_dir=Path(f"/tmp/bench-{variant.name}"),
        train_ds=Dataset.from_list(data),
        eval_ds=None,
        callbacks=[clock.callback()],
    )
    trainer.args.save_strategy = "no"
    trainer.data_collator = Meter(trainer.data_collator)
    return trainer


def plain_loop(
    variant: Variant, model_dir: str, data: list[dict[str, Any]], clock: StepClock
) -> list[tuple[int, int]]:
    """(u): Unsloth's model in a plain loop, no trainer: the speed its kernels allow."""
    import bitsandbytes as bnb

    model, tokenizer = unsloth_model(variant, model_dir)
    model.train()
    optimizer = bnb.optim.AdamW8bit([p for p in model.parameters() if p.requires_grad], lr=2e-4)
    pad = tokenizer.pad_token_id or 0
    tokens: list[tuple[int, int]] = []
    for step in range(len(data) // ROWS_PER_STEP):
        clock.begin()
        for micro in range(variant.accum):
            chunk = data[step * ROWS_PER_STEP + micro * variant.batch :][: variant.batch]
            width = max(len(r["input_ids"]) for r in chunk)
            ids = torch.tensor([r["input_ids"] + [pad] * (width - len(r["input_ids"])) for r in chunk])
            labels = torch.tensor([r["labels"] + [-100] * (width - len(r["labels"])) for r in chunk])
            mask = torch.tensor(
                [[1] * len(r["input_ids"]) + [0] * (width - len(r["input_ids"])) for r in chunk]
            )
            batch = {"input_ids": ids.cuda(), "attention_mask": mask.cuda(), "labels": labels.cuda()}
            tokens.append(count(batch))
            with torch.autocast("cuda", dtype=torch.bfloat16):
                loss = model(**batch).loss / variant.accum
            loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        clock.end()
    return tokens


def run_variant(
    variant: Variant, model_dir: str, vocab: int, args: argparse.Namespace
) -> tuple[dict[str, Any], str]:
    torch.cuda.empty_cache()
    torch.cuda.reset_peak_memory_stats()
    torch.backends.cuda.enable_cudnn_sdp("nocudnn" not in variant.opts)
    data = rows(ROWS_PER_STEP * (args.warmup + args.steps * args.repeats), vocab, "full" in variant.opts)
    clock = StepClock(args.warmup - 1 if args.profile else None)
    if variant.base == "u":
        tokens, accum = plain_loop(variant, model_dir, data, clock), variant.accum
    else:
        build = {"a": hf_peft_trainer, "b": sft_trainer, "c": tuneq_trainer}[variant.base]
        trainer = build(variant, model_dir, data, clock)
        trainer.train()
        tokens, accum = trainer.data_collator.tokens, trainer.args.gradient_accumulation_steps
        del trainer
    return summarize(variant, clock, tokens, accum, args), clock.profile_report(variant.name)


def run_one(args: argparse.Namespace) -> None:
    """Child process: run one variant, print its result line (and its profile)."""
    global torch
    import torch as _torch
    import unsloth  # noqa: F401  (before transformers/trl, as Unsloth asks)
    from transformers import AutoConfig

    from runner.models.resolve import resolve_base

    torch = _torch
    model_dir = resolve_base(args.model)
    vocab = AutoConfig.from_pretrained(model_dir).vocab_size
    result, profile = run_variant(Variant.parse(args.one), model_dir, vocab, args)
    result["gpu"] = torch.cuda.get_device_name()
    result["versions"] = {
        m: __import__(m).__version__ for m in ("torch", "transformers", "trl", "peft", "unsloth")
    }
    print(profile, flush=True)
    print("RESULT " + json.dumps(result), flush=True)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--model", default="tuneq:random-r1-qwen-1.5b")
    parser.add_argument("--variants", default="a,b,c")
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--steps", type=int, default=4)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--profile", action="store_true", help="trace the last warm-up step of each variant")
    parser.add_argument("--out", type=Path, help="results as JSON (and profiles beside it)")
    parser.add_argument("--one", help=argparse.SUPPRESS)  # internal: the child process's variant
    args = parser.parse_args()
    if args.one:
        run_one(args)
        return
    results = []
    for name in args.variants.split(","):
        Variant.parse(name)
        child = [sys.executable, __file__, "--one", name, *sys.argv[1:]]
        proc = subprocess.run(child, stdout=subprocess.PIPE, text=True)  # each variant in a fresh process
        lines = proc.stdout.splitlines()
        found = [json.loads(line[7:]) for line in lines if line.startswith("RESULT ")]
        result = found[0] if found else {"variant": name, "error": f"exit {proc.returncode}"}
        results.append(result)
        print(json.dumps(result), flush=True)
        profile = "\n".join(line for line in lines if not line.startswith("RESULT ")).strip()
        if args.profile and profile and args.out:
            with args.out.with_suffix(".profile.txt").open("a") as f:
                f.write(profile + "\n")
    title = f"{args.model}, seq {SEQ}, LoRA r16 x7, effective batch {ROWS_PER_STEP}"
    print(f"\n{title}, median of {args.repeats} blocks")
    print(f"{'variant':<24}{'tok/s':>10}{'useful tok/s':>14}{'peak GiB':>10}")
    for r in results:
        if "error" in r:
            print(f"{r['variant']:<24}{r['error']:>34}")
        else:
            print(
                f"{r['variant']:<24}{r['tokens_per_s']:>10}{r['useful_tokens_per_s']:>14}{r['peak_gib']:>10}"
            )
    if args.out:
        args.out.write_text(json.dumps({"model": args.model, "results": results}, indent=2))


if __name__ == "__main__":
    main()
