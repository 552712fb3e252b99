"""The run's report and checksums: what ran, with which versions, how long, what it made and how well."""

from __future__ import annotations

import json
import platform
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Any

from runner.core.events import now_iso
from runner.core.rundir import RunDir
from runner.core.secrets import write_redacted, write_redacted_json
from runner.pipeline.artifacts import sha256_file
from runner.pipeline.context import StageContext
from runner.spec.load import spec_hash

_PACKAGES = (
    "tuneq",
    "torch",
    "transformers",
    "trl",
    "peft",
    "accelerate",
    "datasets",
    "unsloth",
    "unsloth_zoo",
    "llama_cpp_python",
    "bitsandbytes",
)


def library_versions() -> dict[str, str | None]:
    """Installed versions of the libraries that shape a run's result."""
    found: dict[str, str | None] = {}
    for name in _PACKAGES:
        try:
            found[name] = version(name)
        except PackageNotFoundError:
            found[name] = None
    return found


def shipped_files(run: RunDir) -> list[Path]:
    """The files the run's checksums cover: GGUFs, the adapter and the merged weights."""
    found = [*run.gguf.glob("*.gguf"), *run.lora.glob("*.safetensors"), *run.merged.glob("*.safetensors")]
    return sorted(found)


def write_report(
    ctx: StageContext, results: dict[str, Any], timings: dict[str, Any], failure: dict[str, Any] | None
) -> Path:
    """Write the report and the checksums (both whole or not at all); return the report's path."""
    root = ctx.run.root
    artifacts = []
    sums = []
    for path in shipped_files(ctx.run):
        digest = sha256_file(path)
        rel = str(path.relative_to(root))
        artifacts.append({"path": rel, "bytes": path.stat().st_size, "sha256": digest})
        sums.append(f"{digest}  {rel}\n")
    train = results.get("train", {})
    fidelity, ship = ctx.run.fidelity, ctx.run.ship
    report = {
        "job": ctx.info.get("job"),
        "name": ctx.spec.name,
        "finished": now_iso(),
        "ok": failure is None,
        "failure": failure,
        "spec_hash": spec_hash(ctx.spec),
        "base_model": ctx.spec.model.base,
        "versions": library_versions(),
        "python": platform.python_version(),
        "machine": platform.machine(),
        "stages": timings,
        "train": train,
        "data": results.get("data"),
        "smoke": json.loads(ctx.run.smoke.read_text()) if ctx.run.smoke.exists() else None,
        "fidelity": json.loads(fidelity.read_text()) if fidelity.exists() else None,
        "ship": sorted(p.name for p in ship.iterdir()) if ctx.run.ship_sums.exists() else None,
        "artifacts": artifacts,
    }
    write_redacted(ctx.run.sha256sums, "".join(sums))
    write_redacted_json(ctx.run.report, report)
    return ctx.run.report
