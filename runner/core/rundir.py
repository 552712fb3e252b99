"""The run directory's layout: one per job, the only place a pipeline writes (docs/run-directory.md)."""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

EXIT_BUSY = 75  # a pipeline's exit code when another one holds its run directory (EX_TEMPFAIL)


class RunDirBusy(RuntimeError):
    """Another process (a pipeline, a ``tuneq run`` preparing it) holds the run directory's lock."""

    def __init__(self, root: Path, holder: str) -> None:
        super().__init__(
            f"run directory {root} is in use by another pipeline (pid {holder or 'unknown'}): wait for it "
            "to end, or pass another --run-dir"
        )


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

    @property
    def lock_file(self) -> Path:
        """Held (an fcntl lock) by the one pipeline working in the directory; holds that process's pid."""
        return self.root / ".lock"

    @contextlib.contextmanager
    def locked(self) -> Iterator[None]:
        """Hold the directory's lock while the block runs; :class:`RunDirBusy` at once if another process
        holds it. The kernel drops the lock when its holder dies, so a killed pipeline never wedges it."""
        self.root.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.lock_file, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                raise RunDirBusy(self.root, self.lock_holder()) from None
            os.ftruncate(fd, 0)
            os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
            yield
        finally:
            os.close(fd)

    def pipeline_pid(self) -> int | None:
        """The pid of the process that holds the lock now (a pipeline working here), else ``None``."""
        try:
            fd = os.open(self.lock_file, os.O_RDONLY)
        except OSError:
            return None
        try:
            fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)  # a probe: taken and dropped at once
        except BlockingIOError:
            holder = self.lock_holder()
            return int(holder) if holder.isdigit() else None
        finally:
            os.close(fd)
        return None

    def lock_holder(self) -> str:
        """The pid written by the process that holds (or last held) the lock; empty if none is known."""
        try:
            return self.lock_file.read_text(errors="replace").strip()[:20]
        except OSError:
            return ""

    def read_job_info(self) -> dict[str, Any]:
        """The contents of ``job.json``."""
        info: dict[str, Any] = json.loads(self.job_json.read_text())
        return info
