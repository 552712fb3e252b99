"""``tuneq backup``: a consistent copy of the queue database, taken while workers keep writing.

The database runs in WAL mode: recent commits live in ``queue.db-wal`` until a checkpoint, so copying
``queue.db`` alone loses them. SQLite's online backup API reads one snapshot through the same locks a
reader takes (the WAL included) and writes a self-contained file.
"""

from __future__ import annotations

import contextlib
import os
import sqlite3
from pathlib import Path

from runner.store.errors import StoreError


def backup(source: Path, dest: Path, *, timeout: float = 5.0) -> int:
    """Copy the database ``source`` to the new file ``dest``; return the number of jobs in the copy.

    ``dest`` appears complete or not at all (written under a temporary name, then renamed). Raises
    :class:`FileExistsError` if ``dest`` exists, :class:`FileNotFoundError` if ``source`` does not,
    :class:`StoreError` if SQLite cannot read or write.
    """
    if not source.is_file():
        raise FileNotFoundError(source)
    if dest.exists():
        raise FileExistsError(dest)
    tmp = dest.with_name(f".{dest.name}.tmp")
    tmp.unlink(missing_ok=True)
    uri = f"{source.resolve().as_uri()}?mode=ro"  # read-only: never creates or changes the queue
    try:
        with (
            contextlib.closing(sqlite3.connect(uri, uri=True, timeout=timeout)) as src,
            contextlib.closing(sqlite3.connect(tmp)) as out,
        ):
            src.backup(out)
            jobs: int = out.execute("SELECT count(*) FROM jobs").fetchone()[0]
        os.replace(tmp, dest)
    except sqlite3.Error as exc:
        raise StoreError(f"cannot back up the queue database {source} to {dest}: {exc}") from None
    finally:
        tmp.unlink(missing_ok=True)
    return jobs
