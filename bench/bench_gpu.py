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
  bucketN       padding-free micro-batches padded to a multiple of N tokens, the tail labelled -100 (c)
  exp           PyTorch's expandable-segments allocator (PYTORCH_CUDA_ALLOC_CONF)
  fused         torch's fused AdamW (fp32 states, one kernel for all LoRA weights) instead of 8-bit AdamW (c)
(c without bsN / gc / nogc / pf / padded sizes them as a job would: from free memory, padding-free.)
All: LoRA r16 on the 7 projections, sequence length 2048, effective batch 8 rows, bf16.
Data: CoT-like rows of mixed length (200-2048 tokens, random ids). Each variant: warm-up steps, then
``--repeats`` timed blocks of ``--steps`` optimizer steps; the table shows the median block.
``--profile`` traces the last warm-up step of each variant and writes where its time went.
A variant named twice runs twice, each time in a fresh process: ``c,c+bucket1024,c,c+bucket1024`` alternates
baseline and variant on the same card. Every result keeps its blocks, step times, per-step loss (c) and
model FLOPs utilization from the real row lengths (``flops_per_token``'s convention).
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


OPTIONS = ("pf", "padded", "own", "full", "gc", "nogc", "nocudnn", "4bit", "exp", "fused")
NUMBERED = ("bs", "bucket")  # options with a number: bs8, bucket1024
BF16_PEAK_FLOPS = 989e12  # H100 / H200 SXM dense bf16
PLANS: list[str] = []  # the batch plan c chose, for its result


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
            if not (opt in OPTIONS or any(_number(opt, k) is not None for k in NUMBERED)):
                raise SystemExit(f"unknown option {opt!r} in {name!r}")
        variant = cls(name, base, tuple(opts))
        if ROWS_PER_STEP % variant.batch:
            raise SystemExit(f"batch {variant.batch} does not divide {ROWS_PER_STEP}")
        return variant

    def number(self, key: str) -> int | None:
        """N of option ``keyN``, or None without it."""
        return next((n for o in self.opts if (n := _number(o, key)) is not None), None)

    @property
    def pinned_batch(self) -> bool:
        return self.number("bs") is not None

    @property
    def batch(self) -> int:
        return self.number("bs") or 2

    @property
    def accum(self) -> int:
        return ROWS_PER_STEP // self.batch

    @property
    def checkpointing(self) -> bool:
        return "nogc" not in self.opts

    @property
    def four_bit(self) -> bool:
        return "4bit" in self.opts


def _number(opt: str, key: str) -> int | None:
    rest = opt.removeprefix(key)
    return int(rest) if rest != opt and rest.isdigit() else None


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


Tokens = tuple[
    int, int, int
]  # a micro-batch's tokens in the batch tensor, in its rows, and sum of rows' squares


def count(batch: dict[str, Any], lengths: list[int]) -> Tokens:
    """A micro-batch's token counts: what the GPU computes on, and what the rows hold."""
    return int(batch["input_ids"].numel()), sum(lengths), sum(n * n for n in lengths)


class Meter:
    """Counts tokens per micro-batch through the collator."""

    def __init__(self, collator: Any) -> None:
        self.collator = collator
        self.tokens: list[Tokens] = []

    def __call__(self, features: list[dict[str, Any]]) -> dict[str, Any]:
        batch = self.collator(features)
        self.tokens.append(count(batch, [len(f["input_ids"]) for f in features]))
        return batch


def model_flops(config: Any, tokens: int, squares: int) -> float:
    """Useful FLOPs of a LoRA step on rows of ``tokens`` tokens (``squares``: the sum of their squared lengths).

    Matmuls 4N a token (forward 2N, backward 2N for the activations: the base is frozen; LoRA's own few
    ignored), N the projections of every layer and the LM head; causal attention 2·L²·heads·head_dim a layer
    forward and twice that backward. Pad tokens and checkpointing's recompute are not useful work.
    """
    hidden, heads = config.hidden_size, config.num_attention_heads
    head_dim = getattr(config, "head_dim", None) or hidden // heads
    kv = getattr(config, "num_key_value_heads", None) or heads
    per_layer = hidden * head_dim * (2 * heads + 2 * kv) + 3 * hidden * config.intermediate_size
    n = config.num_hidden_layers * per_layer + hidden * config.vocab_size
    return 4 * n * tokens + 6 * heads * head_dim * config.num_hidden_layers * squares


class StepClock:
    """Times optimizer steps (CUDA-synchronized) and profiles one of them."""

    def __init__(self, profile_step: int | None) -> None:
        self.times: list[float] = []
        self.losses: list[float] = []  # the trainer's logged loss, a step each (c logs every step)
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

            def on_log(self, args: Any, state: Any, control: Any, logs: Any = None, **kw: Any) -> None:
                if logs and "loss" in logs:
                    clock.losses.append(float(logs["loss"]))

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
    variant: Variant, clock: StepClock, tokens: list[Tokens], accum: int, args: Any, config: Any
) -> dict[str, Any]:
    """Every timed block's tokens/s (all and useful) and MFU, their medians, and the peak memory."""
    steps = [
        [sum(t[k] for t in tokens[i * accum : (i + 1) * accum]) for k in range(3)]
        for i in range(len(clock.times))
    ]
    blocks = []
    for r in range(args.repeats):
        lo, hi = args.warmup + r * args.steps, args.warmup + (r + 1) * args.steps
        seconds = sum(clock.times[lo:hi])
        total, useful, squares = (sum(s[k] for s in steps[lo:hi]) for k in range(3))
        flops = model_flops(config, useful, squares)
        blocks.append(
            {"total": total / seconds, "useful": useful / seconds, "mfu": flops / seconds / BF16_PEAK_FLOPS}
        )
    return {
        "variant": variant.name,
        "tokens_per_s": round(statistics.median(b["total"] for b in blocks)),
        "useful_tokens_per_s": round(statistics.median(b["useful"] for b in blocks)),
        "mfu": round(statistics.median(b["mfu"] for b in blocks), 4),
        "blocks_total": [round(b["total"]) for b in blocks],
        "blocks_useful": [round(b["useful"]) for b in blocks],
        "blocks_mfu": [round(b["mfu"], 4) for b in blocks],
        "step_s": [round(t, 4) for t in clock.times],
        "step_tokens": steps,
        "loss": clock.losses,
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
    lines += ["[train]", "logging_steps = 1", "save_steps = 100000"]  # a loss a step, as a job logs
    lines += [train[o] for o in variant.opts if o in train]
    if "fused" in variant.opts:
        lines.append('optim = "adamw_torch_fused"')
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
    PLANS.append(plan.describe())
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
    if bucket := variant.number("bucket"):
        trainer.data_collator.pad_to_multiple_of = bucket
    trainer.data_collator = Meter(trainer.data_collator)
    return trainer


def plain_loop(
    variant: Variant, model_dir: str, data: list[dict[str, Any]], clock: StepClock
) -> list[Tokens]:
    """(u): Unsloth's model in a plain loop, no trainer: the speed its kernels allow."""
    import bitsandbytes as bnb

    model, tokenizer = unsloth_model(variant, model_dir)
    model.train()
    optimizer = bnb.optim.AdamW8bit([p for p in model.parameters() if p.requires_grad], lr=2e-4)
    pad = tokenizer.pad_token_id or 0
    tokens: list[Tokens] = []
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
            tokens.append(count(batch, [len(r["input_ids"]) for r in chunk]))
            with torch.autocast("cuda", dtype=torch.bfloat16):
                loss = model(**batch).loss / variant.accum
            loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        clock.end()
    return tokens


def run_variant(
    variant: Variant, model_dir: str, config: Any, args: argparse.Namespace
) -> tuple[dict[str, Any], str]:
    torch.cuda.empty_cache()
    torch.cuda.reset_peak_memory_stats()
    torch.backends.cuda.enable_cudnn_sdp("nocudnn" not in variant.opts)
    data = rows(
        ROWS_PER_STEP * (args.warmup + args.steps * args.repeats), config.vocab_size, "full" in variant.opts
    )
    clock = StepClock(args.warmup - 1 if args.profile else None)
    if variant.base == "u":
        tokens, accum = plain_loop(variant, model_dir, data, clock), variant.accum
    else:
        build = {"a": hf_peft_trainer, "b": sft_trainer, "c": tuneq_trainer}[variant.base]
        trainer = build(variant, model_dir, data, clock)
        trainer.train()
        tokens, accum = trainer.data_collator.tokens, trainer.args.gradient_accumulation_steps
        del trainer
    result = summarize(variant, clock, tokens, accum, args, config)
    if PLANS:
        result["plan"] = PLANS[-1]
    return result, clock.profile_report(variant.name)


def run_one(args: argparse.Namespace) -> None:
    """Child process: run one variant, print its result line (and its profile)."""
    global torch
    variant = Variant.parse(args.one)
    if "exp" in variant.opts:  # before CUDA starts
        os.environ["PYTORCH_CUDA_ALLOC_CONF"] = "expandable_segments:True"
    import torch as _torch
    import unsloth  # noqa: F401  (before transformers/trl, as Unsloth asks)
    from transformers import AutoConfig

    from runner.models.resolve import resolve_base

    torch = _torch
    model_dir = resolve_base(args.model)
    result, profile = run_variant(variant, model_dir, AutoConfig.from_pretrained(model_dir), args)
    result["gpu"] = torch.cuda.get_device_name()
    result["settings"] = {k: v for k, v in vars(args).items() if k not in ("one", "out")}
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
        started = time.time()
        child = [sys.executable, __file__, "--one", name, *sys.argv[1:]]
        proc = subprocess.run(child, stdout=subprocess.PIPE, text=True)  # each variant in a fresh process
        lines = proc.stdout.splitlines()
        found = [json.loads(line[7:]) for line in lines if line.startswith("RESULT ")]
        result = found[0] if found else {"variant": name, "error": f"exit {proc.returncode}"}
        result["wall_s"] = round(time.time() - started, 1)
        results.append(result)
        if args.out:  # every finished variant lands at once: a machine taken back keeps what ran
            args.out.write_text(json.dumps({"model": args.model, "results": results}, indent=2))
        print(json.dumps(result), flush=True)
        profile = "\n".join(line for line in lines if not line.startswith("RESULT ")).strip()
        if args.profile and profile and args.out:
            with args.out.with_suffix(".profile.txt").open("a") as f:
                f.write(profile + "\n")
    title = f"{args.model}, seq {SEQ}, LoRA r16 x7, effective batch {ROWS_PER_STEP}"
    print(f"\n{title}, median of {args.repeats} blocks")
    print(f"{'variant':<24}{'tok/s':>10}{'useful tok/s':>14}{'useful spread':>16}{'MFU':>7}{'peak GiB':>10}")
    for r in results:
        if "error" in r:
            print(f"{r['variant']:<24}{r['error']:>34}")
        else:
            spread = f"{min(r['blocks_useful'])}-{max(r['blocks_useful'])}"
            print(
                f"{r['variant']:<24}{r['tokens_per_s']:>10}{r['useful_tokens_per_s']:>14}{spread:>16}"
                f"{r['mfu']:>7.1%}{r['peak_gib']:>10}"
            )


if __name__ == "__main__":
    main()
