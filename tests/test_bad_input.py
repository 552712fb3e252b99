"""Bad input through the real CLI (``python -m runner`` in its own process, with its own TUNEQ_HOME): a
short error and exit 2, never a traceback or a hang; and what the CLI prints of a job is terminal-safe."""

from __future__ import annotations

import json
import os
import re
import shutil
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest
from conftest import JobFactory

from runner.core.jobstate import JobState
from runner.spec.load import MAX_JOB_FILE_BYTES
from runner.store import Store

HUGE = "99999999999999999999"


def tuneq(*args: str, stdin: str | None = None, timeout: float = 30) -> subprocess.CompletedProcess[str]:
    """``python -m runner ARGS`` in its own process."""
    return subprocess.run(
        [sys.executable, "-m", "runner", *args],
        capture_output=True,
        text=True,
        input=stdin,
        timeout=timeout,
        check=False,
    )


def refused(done: subprocess.CompletedProcess[str], *words: str) -> None:
    """Exit 2, no traceback, and a message holding ``words``."""
    assert done.returncode == 2, (done.returncode, done.stdout, done.stderr)
    assert "Traceback" not in done.stderr, done.stderr
    assert all(w in done.stderr for w in words), done.stderr


def finish(job_id: int) -> None:
    with Store() as store:
        store.claim("w", now=time.time(), lease_s=60)
        store.transition(job_id, JobState.RUNNING, JobState.SUCCEEDED, now=time.time())


# --- numbers the database cannot hold ---------------------------------------------------------------


def test_a_priority_or_id_too_large_for_the_database_is_refused(home: Path, make_job: JobFactory) -> None:
    job = make_job("a")
    refused(tuneq("submit", "--priority", HUGE, str(job)), "out of range")
    refused(tuneq("submit", "--priority", "-" + HUGE, str(job)), "out of range")
    assert tuneq("submit", str(job)).returncode == 0
    refused(tuneq("priority", "1", HUGE), "out of range")
    refused(tuneq("show", HUGE), "not a job id")
    refused(tuneq("ship", HUGE), "not a job id")
    assert tuneq("priority", "1", str(2**63 - 1)).stdout == f"job 1 priority {2**63 - 1}\n"


# --- the state directory ----------------------------------------------------------------------------


def test_a_state_directory_that_is_a_file_is_named(home: Path, make_job: JobFactory) -> None:
    home.parent.mkdir(parents=True, exist_ok=True)
    home.write_text("not a directory")
    for verb in (["status"], ["submit", str(make_job("a"))], ["daemon", "status"], ["backup", "x.db"]):
        done = tuneq(*verb)
        refused(done, str(home), "is a file, not a directory")
        assert len(done.stderr.splitlines()) == 1


def test_a_runs_directory_that_is_a_file_is_named(home: Path, make_job: JobFactory) -> None:
    home.mkdir(parents=True)
    (home / "runs").write_text("not a directory")
    done = tuneq("submit", str(make_job("a")))
    refused(done, str(home / "runs"), "is a file, not a directory")
    assert len(done.stderr.splitlines()) == 1
    assert json.loads(tuneq("status", "--json").stdout)["jobs"] == []  # nothing queued


# --- job files that are not files -------------------------------------------------------------------


def test_validate_refuses_devices_fifos_and_huge_files_without_reading_them(
    home: Path, tmp_path: Path
) -> None:
    fifo = tmp_path / "job.toml"
    os.mkfifo(fifo)
    big = tmp_path / "big.toml"
    big.write_text("# " + "x" * MAX_JOB_FILE_BYTES + "\n")
    for path, why in (("/dev/zero", "not a regular file"), (fifo, "not a regular file"), (big, "too large")):
        started = time.monotonic()
        refused(tuneq("validate", str(path), timeout=20), str(path), why)
        assert time.monotonic() - started < 15


def test_validate_refuses_a_data_source_that_is_a_fifo_or_a_device(
    home: Path, make_job: JobFactory, tmp_path: Path
) -> None:
    job = make_job("a")
    os.mkfifo(job.parent / "data" / "rows.jsonl")
    (job.parent / "data" / "zero.jsonl").symlink_to("/dev/zero")
    for name in ("rows.jsonl", "zero.jsonl"):
        job.write_text(re.sub(r'source = "[^"]*"', f'source = "{job.parent}/data/{name}"', job.read_text()))
        refused(tuneq("validate", str(job), timeout=20), "data.source", "not a regular file")


# --- tuneq log --------------------------------------------------------------------------------------


def test_log_and_show_print_no_escape_sequences(home: Path, make_job: JobFactory) -> None:
    assert tuneq("submit", str(make_job("a"))).returncode == 0
    events = home / "runs" / "1" / "events.jsonl"
    hostile = "\x1b]0;pwned\x07\x1b[2J\x1b[31mred\x1b[0m \x9b6n\rline\x07\ttab"
    event = {"v": 1, "t": "2026-01-01T00:00:00.000Z", "job": "1", "stage": "data", "type": "log"}
    events.write_text(json.dumps({**event, "message": hostile}) + "\n")
    with Store() as store:
        store.claim("w", now=time.time(), lease_s=60)
        store.transition(1, JobState.RUNNING, JobState.FAILED, now=time.time(), reason=hostile)
    for verb in ("log", "show"):
        out = tuneq(verb, "1").stdout
        assert not any(ch in out for ch in "\x1b\x07\x9b\r"), repr(out)
        assert "red 6nline\ttab" in out


# --- remove --artifacts -----------------------------------------------------------------------------


def test_remove_artifacts_deletes_what_a_symlinked_run_directory_points_to(
    home: Path, make_job: JobFactory, tmp_path: Path
) -> None:
    for job_id, name in enumerate(("a", "b"), start=1):
        assert tuneq("submit", str(make_job(name))).returncode == 0
        finish(job_id)
    moved = tmp_path / "other-disk"
    moved.mkdir()
    link = home / "runs" / "1"
    shutil.move(link, moved / "1")  # the run directory was moved to another disk and linked back
    link.symlink_to(moved / "1")
    done = tuneq("remove", "1", "--artifacts", "--yes")
    assert done.returncode == 0, done.stderr
    assert done.stdout == f"job 1 removed and {moved / '1'} (linked from {link}) deleted\n"
    assert not (moved / "1").exists() and not link.is_symlink()

    shutil.rmtree(home / "runs" / "2")  # job 2's directory is replaced by a link to someone else's
    (moved / "mine").mkdir()
    (moved / "mine" / "job.json").write_text('{"job": "7"}')
    (home / "runs" / "2").symlink_to(moved / "mine")
    refused(tuneq("remove", "2", "--artifacts", "--yes"), "not this job's run directory", "nothing removed")
    assert (moved / "mine" / "job.json").exists()
    assert [j["id"] for j in json.loads(tuneq("status", "--json").stdout)["jobs"]] == [2]


# --- tuneq backup -----------------------------------------------------------------------------------


def test_backup_holds_the_jobs_that_are_still_in_the_wal(
    home: Path, make_job: JobFactory, tmp_path: Path
) -> None:
    """A plain copy of queue.db misses what sits in the WAL while any connection is open; the backup
    does not."""
    with Store():  # an open connection, as a worker holds: the last close would checkpoint
        for name in ("a", "b", "c"):
            assert tuneq("submit", str(make_job(name))).returncode == 0
        assert (home / "queue.db-wal").stat().st_size > 0
        shutil.copy(home / "queue.db", tmp_path / "plain.db")
        done = tuneq("backup", str(tmp_path / "backup.db"))
        assert done.returncode == 0, done.stderr
        assert "(3 jobs)" in done.stdout
        refused(tuneq("backup", str(tmp_path / "backup.db")), "exists")
        refused(tuneq("backup", str(tmp_path / "nowhere" / "backup.db")), "is not a directory")
    plain = sqlite3.connect(tmp_path / "plain.db")
    with pytest.raises(sqlite3.OperationalError):  # no jobs table: even the schema is in the WAL
        plain.execute("SELECT count(*) FROM jobs").fetchone()
    plain.close()
    assert not (tmp_path / "backup.db-wal").exists()
    with Store(tmp_path / "backup.db") as restored:
        assert [j.name for j in restored.list_jobs()] == ["a", "b", "c"]
