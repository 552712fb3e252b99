"""Disk space for the export stages: checked before they write, and a full disk named as the cause.

A rented server's disk most often fills at merge and export. Before ``merged``, ``gguf`` and ``quantize``,
what that stage and the export stages after it will write is compared with the free space of the run
directory's filesystem; short of it, the stage fails at once ("needs N GB, M GB free"). Sizes: 16-bit
weights take 2 bytes a parameter (the merged safetensors, the f16 GGUF), a quant its bits per weight / 8
(:mod:`runner.core.disksize`), plus a 5% margin. The parameter count comes from the files already
written (the f16 GGUF, the merged safetensors), else the base model's shape from its config. A disk
that fills anyway (an ``ENOSPC`` mid-stage) fails the job with :data:`runner.core.failures.DISK_FULL` and the same hint;
artifacts are written under a temporary name and renamed, so a partial one is never taken for done. A megabyte set aside at the start
(:class:`SpaceReserve`) is given back before the job's last events and report, so a full disk still ends
the job with its cause, its report and ``job_end``.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

from runner.core.disksize import Shape, export_bytes, size_text
from runner.core.failures import DISK_HINT
from runner.pipeline.context import StageContext, StageFailed

EXPORT_STAGES = ("merged", "gguf", "quantize")
_MARGIN = 1.05


class SpaceReserve:
    """A little disk space set aside when the pipeline starts (``.reserve`` in the run directory), given
    back when a full disk would leave no room for the job's last words: its error, report and ``job_end``."""

    SIZE = 2**20

    def __init__(self, path: Path) -> None:
        self.path = path
        try:
            fd = os.open(path, os.O_WRONLY | os.O_CREAT, 0o600)
            try:
                os.posix_fallocate(fd, 0, self.SIZE)
            finally:
                os.close(fd)
        except OSError:  # no room even for this (or no fallocate here): nothing is reserved
            self.release()

    def release(self) -> None:
        """Give the space back (idempotent)."""
        self.path.unlink(missing_ok=True)


def ensure_room(ctx: StageContext, stage: str) -> None:
    """Fail ``stage`` before it writes if its filesystem cannot hold what it and the later export stages
    will write; nothing is checked when the model's size cannot be told."""
    sizes = export_sizes(ctx)
    if sizes is None:
        ctx.log("disk space not checked: the model's size is unknown")
        return
    need = int(_MARGIN * sum(sizes[s] for s in EXPORT_STAGES[EXPORT_STAGES.index(stage) :]))
    free = shutil.disk_usage(ctx.run.root).free
    if need > free:
        raise StageFailed(
            f"{stage}: needs {size_text(need)}, {size_text(free)} free on the disk of {ctx.run.root}",
            DISK_HINT,
        )


def export_sizes(ctx: StageContext) -> dict[str, int] | None:
    """Bytes each export stage is expected to write (``None`` when the model's size cannot be told)."""
    size = _model_size(ctx)
    return None if size is None else export_bytes(size, ctx.spec.export.gguf)


def expected_bytes(ctx: StageContext, stage: str) -> int | None:
    """Bytes ``stage`` is expected to write, if the model's size can be told."""
    sizes = export_sizes(ctx)
    return None if sizes is None else sizes[stage]


def _model_size(ctx: StageContext) -> Shape | int | None:
    """The parameter count from the f16 GGUF or the merged weights on disk, else the base's shape."""
    from runner.models.vram import model_config, model_shape

    f16 = ctx.gguf_file("f16")
    if f16.exists():
        return f16.stat().st_size // 2
    merged = list(ctx.run.merged.glob("*.safetensors")) if ctx.run.merged.is_dir() else []
    if merged:
        return sum(p.stat().st_size for p in merged) // 2
    config = model_config(ctx.spec.model.base, ctx.spec.model.revision)
    return None if config is None else model_shape(config)


def path_is_full(path: Path) -> bool:
    """Whether the filesystem holding ``path`` has (almost) no space left: after a native writer failed."""
    return shutil.disk_usage(path).free < 2**20
