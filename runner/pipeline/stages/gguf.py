"""Stage ``gguf``: the merged model → ``gguf/<name>-f16.gguf`` with llama.cpp's own converter.

The result must tokenize as the merged model does (runner/pipeline/tokparity.py): the job's held-out rows
and smoke prompts to the same ids, with the same BOS/EOS/end-of-turn ids; otherwise the stage fails here.
"""

from __future__ import annotations

from typing import Any

from runner.core.atomic import aside
from runner.llamacpp.converter import converter_script
from runner.pipeline.artifacts import record_artifact, run_converter
from runner.pipeline.context import StageContext
from runner.pipeline.disk import ensure_room, expected_bytes
from runner.pipeline.progress import written_bytes_progress
from runner.pipeline.tokparity import check_parity, job_texts


def run(ctx: StageContext) -> dict[str, Any]:
    """Convert ``merged/`` to an f16 GGUF (the chat template and EOS come from the tokenizer files)."""
    ensure_room(ctx, "gguf")
    ctx.run.gguf.mkdir(exist_ok=True)
    out = ctx.gguf_file("f16")
    writing = [out, aside(out)]
    with written_bytes_progress(ctx, lambda: writing, expected_bytes(ctx, "gguf")):
        run_converter(ctx, converter_script(), [str(ctx.run.merged), "--outtype", "f16"], out)
    remote = ctx.spec.model.trust_remote_code
    texts = job_texts(ctx.run, ctx.run.merged, [p.prompt for p in ctx.spec.smoke.prompts], remote)
    try:
        parity = check_parity(out, ctx.run.merged, texts, remote)
    except Exception:
        out.unlink(missing_ok=True)  # a GGUF that tokenizes wrongly is never left to be reused
        raise
    ctx.log(
        f"tokenizer parity: {parity['texts']} texts, {parity['tokens']} tokens, same ids ({parity['gguf']})"
    )
    return {"artifact": record_artifact(ctx, out, "gguf-f16"), "tokenizer_parity": parity}
