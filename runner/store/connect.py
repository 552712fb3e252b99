"""Opening the queue database: read-write where its directory can be written, else read-only.

A read-only filesystem (a snapshot, a ``ro`` mount, a rescue disk) still lets ``status``, ``show``,
``log`` and ``backup`` read the queue. SQLite opens a WAL database read-only (``mode=ro``) when its
``-shm`` file exists or can be created; where neither holds (a cleanly closed database on a read-only
disk) it is opened ``immutable``, which is safe because nothing can write that disk.
"""

from __future__ import annotations

import os
import sqlite3
from pathlib import Path


def writable_place(path: Path) -> bool:
    """Whether the database ``path`` (or, before it exists, its directory) can be written."""
    return os.access(path.parent, os.W_OK) and (not path.exists() or os.access(path, os.W_OK))


def connect_read_only(path: Path, timeout: float) -> sqlite3.Connection:
    """A read-only connection to the existing database ``path`` (``immutable`` as the last resort)."""
    uri = path.resolve().as_uri()
    conn = sqlite3.connect(f"{uri}?mode=ro", uri=True, timeout=timeout, check_same_thread=False)
    try:
        conn.execute("PRAGMA user_version")  # a WAL database without its -shm fails here, not at connect
    except sqlite3.OperationalError as exc:
        conn.close()
        if exc.sqlite_errorcode & 0xFF != sqlite3.SQLITE_CANTOPEN:  # locked, busy: no reason for immutable
            raise
        conn = sqlite3.connect(f"{uri}?immutable=1", uri=True, timeout=timeout, check_same_thread=False)
    conn.isolation_level = None
    return conn
