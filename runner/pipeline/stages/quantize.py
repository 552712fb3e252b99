"""Stage ``quantize``: f16 GGUF → each requested quant (Q4_K_M, Q8_0, ...) with ``llama_model_quantize``."""

from __future__ import annotations

import ctypes
import os
from pathlib import Path
from typing import Any

from runner.core.atomic import aside, replaced
from runner.core.failures import DISK_FULL, DISK_HINT
from runner.pipeline.artifacts import record_artifact
from runner.pipeline.context import StageContext, StageFailed
from runner.pipeline.disk import ensure_room, expected_bytes, path_is_full
from runner.pipeline.progress import written_bytes_progress
from runner.spec.quants import known_ftypes


def quantize_file(src: Path, dst: Path, ftype: int, threads: int | None = None) -> None:
    """Quantize one GGUF in-process with llama-cpp-python (written aside, renamed)."""
    import llama_cpp

    params = llama_cpp.llama_model_quantize_default_params()
    params.ftype = ftype
    params.nthread = threads or os.cpu_count() or 1
    with replaced(dst) as tmp:
        rc = llama_cpp.llama_model_quantize(str(src).encode(), str(tmp).encode(), ctypes.byref(params))
        if rc != 0 or not tmp.exists():
            if path_is_full(dst.parent):
                raise StageFailed(f"llama_model_quantize could not write {dst.name}: {DISK_FULL}", DISK_HINT)
            raise StageFailed(
                f"llama_model_quantize returned {rc} for {dst.name}", "see log.txt for llama.cpp's output"
            )


def run(ctx: StageContext) -> dict[str, Any]:
    """Write every quant listed in ``export.gguf`` besides f16."""
    ensure_room(ctx, "quantize")
    outs = {quant: ctx.gguf_file(quant) for quant in ctx.spec.export.gguf if quant != "f16"}
    writing = [p for out in outs.values() for p in (out, aside(out))]
    artifacts = []
    with written_bytes_progress(ctx, lambda: writing, expected_bytes(ctx, "quantize")):
        for quant, out in outs.items():
            quantize_file(ctx.gguf_file("f16"), out, known_ftypes()[quant])
            artifacts.append(record_artifact(ctx, out, f"gguf-{quant}"))
    return {"artifacts": artifacts}
