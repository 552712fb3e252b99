"""The database schema as a list of migrations; ``PRAGMA user_version`` counts those applied.

Never edit a released migration: append a new one. A database whose version is above
``len(MIGRATIONS)`` was written by a newer tuneq and is refused rather than guessed at.
"""

from __future__ import annotations

import sqlite3

from runner.store.errors import SchemaTooNew

MIGRATIONS: tuple[str, ...] = (
    # 1: jobs and workers.
    """
    CREATE TABLE jobs (
        id               INTEGER PRIMARY KEY AUTOINCREMENT,
        name             TEXT    NOT NULL,
        spec_text        TEXT    NOT NULL,
        spec_hash        TEXT    NOT NULL,
        source_path      TEXT    NOT NULL,
        priority         INTEGER NOT NULL DEFAULT 0,
        state            TEXT    NOT NULL,
        attempts         INTEGER NOT NULL DEFAULT 0,
        retries_left     INTEGER NOT NULL DEFAULT 0,
        run_dir          TEXT    NOT NULL DEFAULT '',
        created_at       REAL    NOT NULL,
        started_at       REAL,
        finished_at      REAL,
        stage            TEXT,
        step             INTEGER,
        max_steps        INTEGER,
        loss             REAL,
        eta_s            REAL,
        reason           TEXT,
        cancel_requested INTEGER NOT NULL DEFAULT 0,
        worker           TEXT,
        lease_until      REAL,
        handle           TEXT,
        events_offset    INTEGER NOT NULL DEFAULT 0
    );
    CREATE INDEX jobs_next ON jobs (state, priority DESC, id);
    CREATE TABLE workers (
        id         TEXT PRIMARY KEY,
        host       TEXT    NOT NULL,
        pid        INTEGER NOT NULL,
        started_at REAL    NOT NULL,
        seen_at    REAL    NOT NULL
    );
    """,
    # 2: one row per attempt (who ran it, how it ended, whether a late write of its worker was fenced off).
    """
    CREATE TABLE attempts (
        job_id     INTEGER NOT NULL,
        attempt    INTEGER NOT NULL,
        worker     TEXT    NOT NULL,
        started_at REAL    NOT NULL,
        ended_at   REAL,
        state      TEXT,
        reason     TEXT,
        fenced_at  REAL,
        PRIMARY KEY (job_id, attempt)
    );
    """,
)
SCHEMA_VERSION = len(MIGRATIONS)


def user_version(conn: sqlite3.Connection) -> int:
    """The number of migrations applied to this database."""
    version: int = conn.execute("PRAGMA user_version").fetchone()[0]
    return version


def check_not_newer(version: int, path: str) -> None:
    """Refuse a database from a newer tuneq."""
    if version > SCHEMA_VERSION:
        raise SchemaTooNew(
            f"the queue database {path} has schema version {version}, but this tuneq knows only up to "
            f"{SCHEMA_VERSION}: upgrade tuneq (or point TUNEQ_HOME elsewhere)"
        )


def migrate(conn: sqlite3.Connection, path: str) -> None:
    """Apply the missing migrations; the caller holds a write transaction."""
    version = user_version(conn)
    check_not_newer(version, path)
    for number in range(version, SCHEMA_VERSION):
        for statement in MIGRATIONS[number].split(";"):
            if statement.strip():
                conn.execute(statement)
    conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")
