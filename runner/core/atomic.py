"""Writing a file or a folder whole or not at all: written aside, under a temporary name in the same
directory, flushed to disk, then renamed over the final name. A reader, a crash or a full disk never
leaves half of it under the final name, and a name that ends the job is never taken for done."""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path


def aside(path: Path) -> Path:
    """The temporary name ``path`` is written under: ``.<name>.tmp`` beside it."""
    return path.with_name(f".{path.name}.tmp")


def is_aside(path: Path) -> bool:
    """Whether ``path`` (or a folder above it) is a temporary name of :func:`aside`'s."""
    return any(part.startswith(".") and part.endswith(".tmp") for part in path.parts)


@contextmanager
def replaced(path: Path) -> Iterator[Path]:
    """Yield :func:`aside` of ``path`` (cleared first) to write a file or a folder into; when the block
    ends without an error, flush it to disk and rename it to ``path`` (a folder there is replaced).
    Whatever happens, no temporary is left behind."""
    tmp = aside(path)
    _remove(tmp)
    try:
        yield tmp
        _put_in_place(tmp, path)
    finally:
        _remove(tmp)


@contextmanager
def building(dest: Path) -> Iterator[Path]:
    """:func:`replaced` for a folder that several processes may build at once (a model cache, llama.cpp's
    converter): a fresh, uniquely named folder beside ``dest``, readable by all (a container's non-root
    user reads what the worker's user built), that replaces ``dest`` once the block succeeds."""
    dest.parent.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix=f".{dest.name}-", suffix=".tmp", dir=dest.parent))
    try:
        yield work
        work.chmod(0o755)
        _put_in_place(work, dest)
    finally:
        _remove(work)


def _put_in_place(tmp: Path, path: Path) -> None:
    """Flush ``tmp`` to disk and rename it to ``path`` (replacing a folder there), the rename flushed too."""
    _fsync_tree(tmp)
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path)
    os.replace(tmp, path)
    _fsync(path.parent)


def write_atomic(path: Path, data: str | bytes) -> None:
    """Write ``data`` (text as UTF-8) to ``path`` through :func:`replaced`."""
    with replaced(path) as tmp:
        tmp.write_bytes(data.encode() if isinstance(data, str) else data)


def _remove(path: Path) -> None:
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path, ignore_errors=True)
    else:
        path.unlink(missing_ok=True)


def _fsync_tree(path: Path) -> None:
    """Flush a file, or every file of a folder and the folders themselves, to disk."""
    if path.is_dir():
        for sub in path.rglob("*"):
            if not sub.is_symlink():
                _fsync(sub)
    _fsync(path)


def _fsync(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
