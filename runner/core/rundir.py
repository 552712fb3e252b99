"""The run directory's layout: one per job, the only place a pipeline writes (docs/run-directory.md)."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any


@dataclass(frozen=True)
class RunDir:
    """Paths inside ``runs/<job>/``."""

    root: Path

    @property
    def job_toml(self) -> Path:
        """The spec text as submitted (never the user's live file)."""
        return self.root / "job.toml"

    @property
    def job_json(self) -> Path:
        """Facts fixed at submit time: job id, spec hash, where the data file was copied."""
        return self.root / "job.json"

    @property
    def events(self) -> Path:
        """Append-only JSON lines (runner.core.events)."""
        return self.root / "events.jsonl"

    @property
    def log(self) -> Path:
        """Raw stdout/stderr of the pipeline."""
        return self.root / "log.txt"

    @property
    def input_dir(self) -> Path:
        """A copy of the job's local data file."""
        return self.root / "input"

    @property
    def data_dir(self) -> Path:
        """Tokenized train/eval rows and their statistics."""
        return self.root / "data"

    @property
    def checkpoints(self) -> Path:
        """Trainer checkpoints (resume)."""
        return self.root / "checkpoints"

    @property
    def lora(self) -> Path:
        """The PEFT adapter (safetensors)."""
        return self.root / "lora"

    @property
    def merged(self) -> Path:
        """The merged 16-bit model and tokenizer."""
        return self.root / "merged"

    @property
    def gguf(self) -> Path:
        """GGUF files: ``<name>-f16.gguf``, ``<name>-Q4_K_M.gguf``, ``<name>-lora-f16.gguf``."""
        return self.root / "gguf"

    @property
    def stages(self) -> Path:
        """Stage markers (``<stage>.json``): a stage is done when its marker's key matches."""
        return self.root / ".stages"

    def stage_marker(self, stage: str) -> Path:
        """The marker of a finished ``stage`` (its key, outputs, seconds and result)."""
        return self.stages / f"{stage}.json"

    @property
    def smoke(self) -> Path:
        """Smoke-test answers and verdicts."""
        return self.root / "smoke.json"

    @property
    def report(self) -> Path:
        """The run's summary: versions, stage times, losses, artifacts, smoke results."""
        return self.root / "report.json"

    @property
    def sha256sums(self) -> Path:
        """Checksums of the shipped artifacts (``sha256sum -c SHA256SUMS``)."""
        return self.root / "SHA256SUMS"

    def read_job_info(self) -> dict[str, Any]:
        """The contents of ``job.json``."""
        info: dict[str, Any] = json.loads(self.job_json.read_text())
        return info
