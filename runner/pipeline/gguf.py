"""Stage ``gguf``: the merged model → ``gguf/<name>-f16.gguf`` with llama.cpp's own converter."""

from __future__ import annotations

from typing import Any

from runner.llamacpp import converter_script
from runner.pipeline.artifacts import record_artifact, run_converter
from runner.pipeline.context import StageContext
from runner.pipeline.disk import ensure_room


def f16_path(ctx: StageContext) -> Any:
    """Where the f16 GGUF goes."""
    return ctx.run.gguf / f"{ctx.spec.artifact_name}-f16.gguf"


def run(ctx: StageContext) -> dict[str, Any]:
    """Convert ``merged/`` to an f16 GGUF (the chat template and EOS come from the tokenizer files)."""
    ensure_room(ctx, "gguf")
    ctx.run.gguf.mkdir(exist_ok=True)
    out = f16_path(ctx)
    run_converter(ctx, converter_script(), [str(ctx.run.merged), "--outtype", "f16"], out)
    return {"artifact": record_artifact(ctx, out, "gguf-f16")}
