"""Stage ``merged``: the adapter merged into 16-bit weights, saved with the tokenizer → ``merged/``."""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

from runner.core.atomic import replaced
from runner.models.resolve import local_model_dir
from runner.pipeline.context import StageContext, StageFailed
from runner.pipeline.disk import ensure_room, expected_bytes
from runner.pipeline.progress import written_bytes_progress
from runner.pipeline.sft import setup_unsloth_env


def run(ctx: StageContext) -> dict[str, Any]:
    """Merge with Unsloth's ``save_pretrained_merged(..., "merged_16bit")`` and check what it wrote."""
    ensure_room(ctx, "merged")
    setup_unsloth_env(ctx)
    model, tokenizer = ctx.handoff.model, ctx.handoff.tokenizer
    if model is None:  # train was reused: load base + adapter from lora/
        import unsloth  # noqa: F401
        from unsloth import FastLanguageModel

        model, tokenizer = FastLanguageModel.from_pretrained(
            model_name=str(ctx.run.lora),
            max_seq_length=ctx.spec.model.max_seq_length,
            load_in_4bit=ctx.spec.model.load_in_4bit,
            trust_remote_code=ctx.spec.model.trust_remote_code,
        )
    with replaced(ctx.run.merged) as tmp:  # a partial merge is removed: it would only hold on to the space
        with written_bytes_progress(ctx, lambda: [tmp], expected_bytes(ctx, "merged")):
            model.save_pretrained_merged(str(tmp), tokenizer, save_method="merged_16bit")
        _restore_tokenizer_files(ctx, tmp)
        weights = list(tmp.glob("*.safetensors"))
        total = sum(p.stat().st_size for p in weights)
        if not weights or total == 0 or not (tmp / "config.json").exists():
            raise StageFailed(
                "the merge wrote no weights (merged/ has no safetensors or config.json)",
                "check free disk space and memory; see log.txt for the merge output",
            )
    ctx.handoff.model = None  # free memory before conversion
    return {"bytes": total, "files": sorted(p.name for p in ctx.run.merged.iterdir())}


# Tokenizer files llama.cpp's converter reads that a transformers 5 ``save_pretrained`` does not write.
_TOKENIZER_EXTRAS = ("tokenizer.model", "added_tokens.json")


def _restore_tokenizer_files(ctx: StageContext, merged: Path) -> None:
    """Copy the base model's sentencepiece model and added-token list when the merged save dropped them."""
    base = local_model_dir(ctx.spec.model.base, ctx.spec.model.revision)
    if base is None:
        return
    for name in _TOKENIZER_EXTRAS:
        if (base / name).exists() and not (merged / name).exists():
            shutil.copy2(base / name, merged / name)
