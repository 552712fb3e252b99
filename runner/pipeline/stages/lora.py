"""Stage ``lora``: the adapter as GGUF (``gguf/<name>-lora-f16.gguf``) for ``llama-cli --lora``."""

from __future__ import annotations

from typing import Any

from runner.core.atomic import aside
from runner.llamacpp.converter import converter_script
from runner.models.resolve import local_model_dir
from runner.pipeline.artifacts import record_artifact, run_converter
from runner.pipeline.context import StageContext, StageFailed
from runner.pipeline.progress import written_bytes_progress


def run(ctx: StageContext) -> dict[str, Any]:
    """Convert ``lora/`` to GGUF against the base model's files (no hub access)."""
    if not ctx.spec.export.lora_gguf:
        return {"skipped": "export.lora_gguf = false"}
    base = local_model_dir(ctx.spec.model.base, ctx.spec.model.revision)
    if base is None:
        raise StageFailed(
            f"the base model {ctx.spec.model.base} is not on disk, so the adapter cannot be converted",
            "set export.lora_gguf = false, or load the model once with network access",
        )
    ctx.run.gguf.mkdir(exist_ok=True)
    out = ctx.run.lora_gguf(ctx.spec.artifact_name)
    adapter = sum(
        p.stat().st_size for p in ctx.run.lora.glob("*.safetensors")
    )  # the GGUF's size, near enough
    with written_bytes_progress(ctx, lambda: [out, aside(out)], adapter or None):
        run_converter(
            ctx,
            converter_script("convert_lora_to_gguf.py"),
            ["--base", str(base), "--outtype", "f16", str(ctx.run.lora)],
            out,
        )
    return {"artifact": record_artifact(ctx, out, "lora-gguf")}
