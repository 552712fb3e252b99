"""Stage ``data``: rows → conversations → token ids and labels, saved for the trainer.

Fails early when nothing would be learned ("all labels are -100"): examples with no trainable token
after truncation are counted, dropped, and an error names the setting to change when none remain.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from statistics import mean
from typing import Any

from runner.core.atomic import replaced
from runner.core.events import Metric
from runner.core.secrets import write_redacted, write_redacted_json
from runner.dataset.build import load_examples
from runner.dataset.formats import Example
from runner.dataset.templates import Tokenized, render_sample, tokenize_example, truncation_warning
from runner.models.resolve import load_tokenizer
from runner.pipeline.context import StageContext, StageFailed
from runner.pipeline.progress import counted_progress


def run(ctx: StageContext) -> dict[str, Any]:
    """Build ``data/train`` (and ``data/eval``) as tokenized datasets plus ``data/stats.json``."""
    spec = ctx.spec
    base_dir = Path(ctx.info.get("source_file", ctx.run.job_toml)).parent
    examples = load_examples(spec.data, spec.template, base_dir, ctx.data_path, spec.train.seed)
    tokenizer = load_tokenizer(spec.model.base, spec.model.revision, spec.model.trust_remote_code)
    ctx.handoff.tokenizer = tokenizer
    _check_smoke_prompts(ctx, tokenizer)
    with counted_progress(ctx, len(examples.train) + len(examples.eval), "rows") as advance:
        train, train_stats = _tokenize_all(examples.train, ctx, tokenizer, advance)
        evals, eval_stats = _tokenize_all(examples.eval, ctx, tokenizer, advance)
    if not train:
        raise StageFailed(
            "no training example has a token to learn from after truncation (all labels would be -100)",
            f"raise model.max_seq_length (now {spec.model.max_seq_length}) or shorten the prompts",
        )
    run = ctx.run
    with replaced(run.data_dir) as tmp:  # the names inside are the run directory's own
        tmp.mkdir()
        _save(train, tmp / run.data_train.name)
        if evals:
            _save(evals, tmp / run.data_eval.name)
        stats = {
            "format": examples.format,
            "eval_rows_from": examples.eval_from,
            "train": train_stats,
            "eval": eval_stats,
        }
        write_redacted_json(tmp / run.data_stats.name, stats)
        write_redacted(tmp / run.data_sample.name, render_sample(train[0], tokenizer))
    ctx.emit(
        Metric(
            values={
                "train_rows": len(train),
                "eval_rows": len(evals),
                "train_tokens": train_stats["tokens"],
                "truncated": train_stats["truncated"],
                "dropped": train_stats["dropped_no_target"],
            }
        )
    )
    return stats


def _check_smoke_prompts(ctx: StageContext, tokenizer: Any) -> None:
    """Fail now, not after training, when a smoke prompt alone is longer than the smoke test's room."""
    room = ctx.spec.smoke_prompt_tokens
    for i, one in enumerate(ctx.spec.smoke.prompts):
        tokens = len(tokenizer(one.prompt, add_special_tokens=False)["input_ids"])
        if tokens > room:
            raise StageFailed(
                f"smoke.prompts[{i}] is {tokens:,} tokens, more than the smoke test's room for a prompt "
                f"({room:,} tokens)",
                "shorten the prompt, or raise model.max_seq_length",
            )


def _tokenize_all(
    examples: list[Example], ctx: StageContext, tokenizer: Any, advance: Callable[[int], None]
) -> tuple[list[Tokenized], dict[str, Any]]:
    max_seq_length = ctx.spec.model.max_seq_length
    rows = []
    for example in examples:
        rows.append(tokenize_example(example, ctx.spec.template, tokenizer, max_seq_length))
        advance(1)
    if warning := truncation_warning(examples, rows, max_seq_length):
        ctx.log(f"warning: {warning}")
    kept = [r for r in rows if r.trainable > 0]
    dropped = len(rows) - len(kept)
    if dropped:
        ctx.log(f"dropped {dropped} example(s) with no trainable token after truncation")
    lengths = [len(r.input_ids) for r in kept]
    stats = {
        "rows": len(kept),
        "dropped_no_target": dropped,
        "truncated": sum(r.truncated for r in rows),
        "tokens": sum(lengths),
        "trainable_tokens": sum(r.trainable for r in kept),
        "mean_length": round(mean(lengths), 1) if lengths else 0,
        "max_length": max(lengths, default=0),
    }
    return kept, stats


def _save(rows: list[Tokenized], path: Path) -> None:
    from datasets import Dataset

    Dataset.from_dict(
        {"input_ids": [r.input_ids for r in rows], "labels": [r.labels for r in rows]}
    ).save_to_disk(str(path))
