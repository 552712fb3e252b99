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

SUMS = "SHA256SUMS"  # a folder's checksums file, in ``sha256sum -c`` format
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
    def unsloth_cache(self) -> Path:
        """Where Unsloth compiles its kernels (``UNSLOTH_COMPILE_LOCATION``), one per run."""
        return self.root / ".unsloth_cache"

    @property
    def checkpoint_stamp(self) -> Path:
        """The settings key the checkpoints were written under (resume only from the same settings)."""
        return self.checkpoints / "tuneq-key.txt"

    @property
    def lora(self) -> Path:
        """The PEFT adapter (safetensors)."""
        return self.root / "lora"

    @property
    def merged(self) -> Path:
        """The merged 16-bit model and tokenizer."""
        return self.root / "merged"

    @property
    def data_train(self) -> Path:
        """The tokenized training rows (a ``datasets`` folder)."""
        return self.data_dir / "train"

    @property
    def data_eval(self) -> Path:
        """The tokenized held-out rows (absent when the job has none)."""
        return self.data_dir / "eval"

    @property
    def data_stats(self) -> Path:
        """Row and token counts of the tokenized data."""
        return self.data_dir / "stats.json"

    @property
    def data_sample(self) -> Path:
        """The first training row as the model sees it, trained tokens marked."""
        return self.data_dir / "sample.txt"

    @property
    def gguf(self) -> Path:
        """GGUF files: ``<name>-f16.gguf``, ``<name>-Q4_K_M.gguf``, ``<name>-lora-f16.gguf``."""
        return self.root / "gguf"

    def quant_gguf(self, name: str, quant: str) -> Path:
        """The GGUF of the model ``name`` (the job's artifact name) in ``quant`` (``f16``, ``q4_k_m``, ...):
        llama.cpp's spelling, ``<name>-f16.gguf`` or ``<name>-Q4_K_M.gguf``."""
        return self.gguf / f"{name}-{'f16' if quant == 'f16' else quant.upper()}.gguf"

    def lora_gguf(self, name: str) -> Path:
        """The adapter as GGUF, for ``llama-cli --lora``."""
        return self.gguf / f"{name}-lora-f16.gguf"

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
    def fidelity(self) -> Path:
        """Before/after answers, perplexities and their verdicts."""
        return self.root / "fidelity.json"

    @property
    def eval_md(self) -> Path:
        """:attr:`fidelity` as a table to read."""
        return self.root / "eval.md"

    @property
    def ship(self) -> Path:
        """The folder to hand over as is (the ship stage's; ``tuneq ship`` copies it)."""
        return self.root / "ship"

    @property
    def ship_modelfile(self) -> Path:
        """Ollama's ``Modelfile`` for the tested GGUF."""
        return self.ship / "Modelfile"

    @property
    def ship_card(self) -> Path:
        """The model card."""
        return self.ship / "README.md"

    @property
    def ship_commands(self) -> Path:
        """The commands that run the shipped files."""
        return self.ship / "commands.txt"

    @property
    def ship_loss_plot(self) -> Path:
        """The loss curve the model card shows."""
        return self.ship / "loss.png"

    @property
    def ship_sums(self) -> Path:
        """Checksums of the ship folder's files, written last: the folder is finished once it exists."""
        return self.ship / SUMS

    @property
    def report(self) -> Path:
        """The run's summary: versions, stage times, losses, artifacts, smoke results."""
        return self.root / "report.json"

    @property
    def sha256sums(self) -> Path:
        """Checksums of the shipped artifacts (``sha256sum -c SHA256SUMS``)."""
        return self.root / SUMS

    @property
    def reserve(self) -> Path:
        """Disk space the pipeline sets aside for its last words (runner.pipeline.disk.SpaceReserve)."""
        return self.root / ".reserve"

    @property
    def cluster_sync(self) -> Path:
        """The cluster backend's record of the attempt following this run (its actor, node, offsets)."""
        return self.root / ".cluster.json"

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


LAYOUT = RunDir(Path())  # the layout's names relative to a run directory (``LAYOUT.smoke`` is ``smoke.json``)
