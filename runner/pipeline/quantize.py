"""Stage ``quantize``: f16 GGUF → each requested quant (Q4_K_M, Q8_0, ...) with ``llama_model_quantize``."""

from __future__ import annotations

import ctypes
import os
from pathlib import Path
from typing import Any

from runner.core.failures import DISK_FULL, DISK_HINT
from runner.pipeline.artifacts import record_artifact
from runner.pipeline.context import StageContext, StageFailed
from runner.pipeline.disk import ensure_room, expected_bytes, path_is_full
from runner.pipeline.gguf import f16_path
from runner.pipeline.progress import written_bytes_progress
from runner.spec.quants import known_ftypes


def quant_path(ctx: StageContext, quant: str) -> Path:
    """Where a quantized (or the f16) GGUF goes."""
    if quant == "f16":
        return f16_path(ctx)
    return ctx.run.gguf / f"{ctx.spec.artifact_name}-{quant.upper()}.gguf"


def quantize_file(src: Path, dst: Path, ftype: int, threads: int | None = None) -> None:
    """Quantize one GGUF in-process with llama-cpp-python (written as ``dst.tmp``, renamed)."""
    import llama_cpp

    params = llama_cpp.llama_model_quantize_default_params()
    params.ftype = ftype
    params.nthread = threads or os.cpu_count() or 1
    tmp = dst.with_name(dst.name + ".tmp")
    rc = llama_cpp.llama_model_quantize(str(src).encode(), str(tmp).encode(), ctypes.byref(params))
    if rc != 0 or not tmp.exists():
        full = path_is_full(dst.parent)
        tmp.unlink(missing_ok=True)
        if full:
            raise StageFailed(f"llama_model_quantize could not write {dst.name}: {DISK_FULL}", DISK_HINT)
        raise StageFailed(
            f"llama_model_quantize returned {rc} for {dst.name}", "see log.txt for llama.cpp's output"
        )
    os.replace(tmp, dst)


def run(ctx: StageContext) -> dict[str, Any]:
    """Write every quant listed in ``export.gguf`` besides f16."""
    ensure_room(ctx, "quantize")
    outs = {quant: quant_path(ctx, quant) for quant in ctx.spec.export.gguf if quant != "f16"}
    writing = [p for out in outs.values() for p in (out, out.with_name(out.name + ".tmp"))]
    artifacts = []
    with written_bytes_progress(ctx, lambda: writing, expected_bytes(ctx, "quantize")):
        for quant, out in outs.items():
            quantize_file(f16_path(ctx), out, known_ftypes()[quant])
            artifacts.append(record_artifact(ctx, out, f"gguf-{quant}"))
    return {"artifacts": artifacts}
