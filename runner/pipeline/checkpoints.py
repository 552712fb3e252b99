"""Trainer checkpoints (``checkpoints/checkpoint-N/``): which one to resume from, and none left half-written.

A checkpoint is resumed from only if it is intact: its ``trainer_state.json`` parses and names its step, a
weights file is there, every torch file (``*.pt``, ``*.pth``, ``*.bin``: zip archives with a CRC per entry)
passes its CRC check, every safetensors file is as long as its header says, every JSON file parses. A damaged
one (a disk that filled while it was saved, a copy cut short, a flipped bit) is removed, and training resumes
from the newest intact one, saying so in the log; with none intact it starts afresh.

A save that fails (a full disk: torch then raises ``RuntimeError ... unexpected pos``, not ``ENOSPC``) leaves
no partial checkpoint behind (:func:`no_partial_checkpoint`), and a full disk is named as the cause.
"""

from __future__ import annotations

import contextlib
import json
import shutil
import struct
import zipfile
from collections.abc import Callable, Iterator
from pathlib import Path

from runner.core.failures import DISK_FULL, DISK_HINT, is_disk_full
from runner.core.rundir import LAYOUT
from runner.pipeline.context import StageFailed
from runner.pipeline.disk import path_is_full

PREFIX = "checkpoint-"
STATE = "trainer_state.json"
WEIGHTS = (
    "adapter_model.safetensors",
    "adapter_model.bin",
    "model.safetensors",
    "pytorch_model.bin",
    "model.safetensors.index.json",
    "pytorch_model.bin.index.json",
)
_TORCH_SUFFIXES = (".pt", ".pth", ".bin")


def step_of(folder: Path) -> int | None:
    """The step in a ``checkpoint-N`` folder's name (``None`` for any other name)."""
    number = folder.name.removeprefix(PREFIX)
    return int(number) if folder.name.startswith(PREFIX) and number.isdigit() else None


def damage(folder: Path) -> str | None:
    """What is wrong with a checkpoint folder, or ``None`` if it is intact."""
    try:
        state = json.loads((folder / STATE).read_text())
    except FileNotFoundError:
        return f"no {STATE} (its save was cut short)"
    except (OSError, ValueError) as exc:
        return f"{STATE} is unreadable ({exc})"
    if not isinstance(state, dict) or not isinstance(state.get("global_step"), int):
        return f"{STATE} names no step"
    if not any((folder / name).is_file() for name in WEIGHTS):
        return "no weights file"
    for path in sorted(folder.iterdir()):
        if path.is_file() and (problem := _file_damage(path)) is not None:
            return f"{path.name}: {problem}"
    return None


def _file_damage(path: Path) -> str | None:
    try:
        if path.suffix in _TORCH_SUFFIXES:
            return _torch_damage(path)
        if path.suffix == ".safetensors":
            return _safetensors_damage(path)
        if path.suffix == ".json":
            json.loads(path.read_text())
    except (OSError, ValueError, zipfile.BadZipFile) as exc:
        return f"unreadable ({exc})"
    return None


def _torch_damage(path: Path) -> str | None:
    """A ``torch.save`` file is a zip archive: truncation breaks its directory, a changed byte its CRC."""
    if not zipfile.is_zipfile(path):
        return "truncated or not a torch file"
    with zipfile.ZipFile(path) as archive:
        bad = archive.testzip()
    return f"entry {bad} fails its CRC check" if bad is not None else None


def _safetensors_damage(path: Path) -> str | None:
    """A safetensors file: an 8-byte header length, a JSON header, then exactly the bytes it describes."""
    size = path.stat().st_size
    with path.open("rb") as handle:
        prefix = handle.read(8)
        if len(prefix) < 8:
            return "truncated"
        (length,) = struct.unpack("<Q", prefix)
        if 8 + length > size:
            return "truncated"
        header = json.loads(handle.read(length))
    ends = [t["data_offsets"][1] for k, t in header.items() if k != "__metadata__"]
    if 8 + length + max(ends, default=0) != size:
        return f"{size:,} bytes where its header describes {8 + length + max(ends, default=0):,}"
    return None


def newest_intact(checkpoints: Path, key: str, log: Callable[[str], None]) -> Path | None:
    """The newest intact checkpoint written under the same settings (``key``), if any.

    Checkpoints of other settings cannot be resumed from, and damaged ones never: both are removed (each
    damaged one named in the log, with the checkpoint resumed from instead).
    """
    stamp = checkpoints / LAYOUT.checkpoint_stamp.name
    if checkpoints.exists() and (not stamp.exists() or stamp.read_text() != key):
        shutil.rmtree(checkpoints)
    checkpoints.mkdir(parents=True, exist_ok=True)
    stamp.write_text(key)
    damaged: list[str] = []
    for folder in sorted(_folders(checkpoints), key=lambda f: step_of(f) or 0, reverse=True):
        problem = damage(folder)
        if problem is None:
            if damaged:
                log(f"{'; '.join(damaged)}: resuming from {folder.name}, the newest intact checkpoint")
            return folder
        shutil.rmtree(folder, ignore_errors=True)
        damaged.append(f"{folder.name} is damaged ({problem}) and was removed")
    if damaged:
        log(f"{'; '.join(damaged)}: no intact checkpoint is left, training starts afresh")
    return None


@contextlib.contextmanager
def no_partial_checkpoint(checkpoints: Path, log: Callable[[str], None]) -> Iterator[None]:
    """Run training; if it fails, remove the checkpoints it left damaged (a save cut short). A disk found full
    then is named as the cause (:class:`StageFailed` with the fix), whatever the writer raised (torch:
    ``RuntimeError ... unexpected pos``)."""
    try:
        yield
    except BaseException as exc:
        full = path_is_full(checkpoints)  # before removing anything frees space
        removed = [f.name for f in _folders(checkpoints) if damage(f) is not None]
        for name in removed:
            shutil.rmtree(checkpoints / name, ignore_errors=True)
        if removed:
            with contextlib.suppress(OSError):  # the log line must not hide the cause
                log(f"removed the partial checkpoint {', '.join(removed)}")
        if full and isinstance(exc, Exception) and not (is_disk_full(exc) or isinstance(exc, StageFailed)):
            raise StageFailed(f"saving a checkpoint: {DISK_FULL}", DISK_HINT) from exc  # torch's own words
        raise


def _folders(checkpoints: Path) -> list[Path]:
    if not checkpoints.is_dir():
        return []
    return [p for p in checkpoints.iterdir() if p.is_dir() and step_of(p) is not None]
