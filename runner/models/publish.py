"""Built-in models reach the cache whole or not at all: built in a temporary folder, then renamed."""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path


@contextmanager
def building(dest: Path) -> Iterator[Path]:
    """A fresh folder beside ``dest`` to build in; on success it replaces ``dest``, on failure it is removed.

    The folder is made readable to all (``mkdtemp`` makes it 0700), so a container's non-root user can read
    the model cache that the worker's user filled.
    """
    dest.parent.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix=f".{dest.name}-", dir=dest.parent))
    try:
        yield work
        work.chmod(0o755)
        if dest.exists():
            shutil.rmtree(dest)
        os.replace(work, dest)
    finally:
        shutil.rmtree(work, ignore_errors=True)
