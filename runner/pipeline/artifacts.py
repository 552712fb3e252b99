"""Artifacts: checksums, the ``artifact`` event, and subprocess helpers for llama.cpp's converters."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import Any

from runner.core.atomic import replaced
from runner.core.checksum import sha256_file
from runner.core.events import Artifact
from runner.core.failures import DISK_FULL, DISK_HINT
from runner.pipeline.context import StageContext, StageFailed


def record_artifact(ctx: StageContext, path: Path, kind: str) -> dict[str, Any]:
    """Emit an ``artifact`` event for a finished file and return its description."""
    rel, size, digest = str(path.relative_to(ctx.run.root)), path.stat().st_size, sha256_file(path)
    ctx.emit(Artifact(path=rel, kind=kind, bytes=size, sha256=digest))
    return {"path": rel, "kind": kind, "bytes": size, "sha256": digest}


def run_converter(ctx: StageContext, script: Path, args: list[str], out: Path) -> None:
    """Run a llama.cpp converter script into ``out`` (written aside, renamed on success: a partial file
    never stays to hold on to the space).

    Its output goes to the pipeline's own stdout/stderr (the run's log); a failure keeps the last lines.
    """
    env = dict(os.environ)
    env.pop("NO_LOCAL_GGUF", None)  # let the converter use its own gguf-py, newer than PyPI's
    with replaced(out) as tmp:
        proc = subprocess.run(
            [sys.executable, str(script), *args, "--outfile", str(tmp)],
            env=env,
            capture_output=True,
            text=True,
        )
        sys.stdout.write(proc.stdout[-20_000:])
        sys.stderr.write(proc.stderr[-20_000:])
        if proc.returncode != 0 or not tmp.exists() or tmp.stat().st_size == 0:
            tail = "\n".join((proc.stderr or proc.stdout).strip().splitlines()[-5:])
            if "No space left on device" in proc.stderr or "Disk quota exceeded" in proc.stderr:
                raise StageFailed(f"{script.name} failed (exit {proc.returncode}): {DISK_FULL}", DISK_HINT)
            hint = None
            if "NotImplementedError" in tail and "pre-tokenizer" in tail.lower():
                hint = "llama.cpp does not know this tokenizer's pre-tokenizer; use a supported base model"
            raise StageFailed(f"{script.name} failed (exit {proc.returncode}): {tail}", hint)
