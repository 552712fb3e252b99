"""``tuneq backup``: a consistent copy of the queue database, taken while workers keep writing.

The database runs in WAL mode: recent commits live in ``queue.db-wal`` until a checkpoint, so copying
``queue.db`` alone loses them. SQLite's online backup API reads one snapshot through the same locks a
reader takes (the WAL included) and writes a self-contained file. It copies pages as they are, a
corrupt one too, so the copy is checked (``PRAGMA integrity_check``) before it gets its name.
"""

from __future__ import annotations

import contextlib
import sqlite3
from pathlib import Path

from runner.core.atomic import replaced
from runner.store.connect import connect_read_only
from runner.store.errors import StoreError


def backup(source: Path, dest: Path, *, timeout: float = 5.0) -> int:
    """Copy the database ``source`` to the new file ``dest``; return the number of jobs in the copy.

    ``dest`` appears complete and intact or not at all (written under a temporary name, checked, then
    renamed). Raises :class:`FileExistsError` if ``dest`` exists, :class:`FileNotFoundError` if ``source``
    does not, :class:`StoreError` if SQLite cannot read or write, or the copy is damaged.
    """
    if not source.is_file():
        raise FileNotFoundError(source)
    if dest.exists():
        raise FileExistsError(dest)
    try:
        with (
            replaced(dest) as tmp,
            contextlib.closing(connect_read_only(source, timeout)) as src,  # never changes the queue
            contextlib.closing(sqlite3.connect(tmp)) as out,
        ):
            src.backup(out)
            _check_intact(out, source, dest)
            jobs: int = out.execute("SELECT count(*) FROM jobs").fetchone()[0]
    except sqlite3.Error as exc:
        raise StoreError(f"cannot back up the queue database {source} to {dest}: {exc}") from None
    return jobs


def _check_intact(copy: sqlite3.Connection, source: Path, dest: Path) -> None:
    """Raise :class:`StoreError` naming the first problem ``PRAGMA integrity_check`` finds in the copy."""
    try:
        found = [row[0] for row in copy.execute("PRAGMA integrity_check(5)")]
    except sqlite3.DatabaseError as exc:  # a page so broken that the check itself stops
        found = [str(exc)]
    if found != ["ok"]:
        raise StoreError(
            f"the queue database {source} is damaged ({found[0]}{' …' if len(found) > 1 else ''}): no backup "
            f"written to {dest}; stop the worker, then salvage it with `sqlite3 {source} .recover` "
            "or restore an earlier backup"
        )
