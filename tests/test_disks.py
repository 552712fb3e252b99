"""Read-only and full disks, and a damaged queue, through the real CLI on real mounts (tmpfs filesystems
remounted read-only, a read-only bind mount, a size-limited tmpfs): one line naming the cause and the fix,
exit 2 (a damaged backup: non-zero), never a traceback or a worker that loops for ever. Reading a queue on
a read-only disk works: ``status``, ``show``, ``log`` and ``backup``.

Mounting needs root; without it the tests skip, except in CI (``CI=true``), where that is a failure.
"""

from __future__ import annotations

import json
import os
import sqlite3
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from conftest import JobFactory

from runner.store import Store
from runner.store.schema import MIGRATIONS

Mount = Callable[..., Path]


def tuneq(*args: str, timeout: float = 30) -> subprocess.CompletedProcess[str]:
    """``python -m runner ARGS`` in its own process."""
    return subprocess.run(
        [sys.executable, "-m", "runner", *args], capture_output=True, text=True, timeout=timeout, check=False
    )


def one_line_refusal(done: subprocess.CompletedProcess[str], *words: str, code: int = 2) -> None:
    """Exit ``code``, no traceback, one line on stderr holding ``words``."""
    assert done.returncode == code, (done.returncode, done.stdout, done.stderr)
    assert "Traceback" not in done.stderr, done.stderr
    assert len(done.stderr.strip().splitlines()) == 1, done.stderr
    assert all(w in done.stderr for w in words), done.stderr


def _sh(*cmd: str) -> None:
    subprocess.run(cmd, check=True, capture_output=True, text=True)


@pytest.fixture
def mount(tmp_path: Path) -> Iterator[Mount]:
    """``mount(size)``: a new tmpfs of that size; ``mount(bind=PATH)``: PATH bound read-only over itself.
    Everything mounted is unmounted at teardown."""
    if os.geteuid() != 0:
        _cannot("mounting needs root")
    mounted: list[Path] = []

    def make(size: str = "16m", *, bind: Path | None = None) -> Path:
        if bind is not None:
            _sh("mount", "--bind", str(bind), str(bind))
            mounted.append(bind)
            _sh("mount", "-o", "remount,bind,ro", str(bind))
            return bind
        where = tmp_path / f"disk{len(mounted)}"
        where.mkdir()
        try:
            _sh("mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(where))
        except subprocess.CalledProcessError as exc:
            _cannot(f"mount -t tmpfs failed: {exc.stderr.strip()}")
        mounted.append(where)
        return where

    yield make
    for where in reversed(mounted):
        subprocess.run(["umount", "-l", str(where)], check=False, capture_output=True)


def _cannot(why: str) -> None:
    if os.environ.get("CI") == "true":
        pytest.fail(f"CI=true and {why}", pytrace=False)
    pytest.skip(why)


def remount_read_only(where: Path) -> None:
    _sh("mount", "-o", "remount,ro", str(where))


# --- a queue on a read-only disk ------------------------------------------------------------------------


def test_a_queue_on_a_read_only_disk_is_read_and_backed_up_and_writes_are_refused(
    mount: Mount, make_job: JobFactory, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    home = mount() / "state"
    monkeypatch.setenv("TUNEQ_HOME", str(home))
    for name in ("a", "b"):
        assert tuneq("submit", str(make_job(name))).returncode == 0
    remount_read_only(home.parent)

    status = tuneq("status", "--json")
    assert status.returncode == 0, status.stderr
    assert [j["name"] for j in json.loads(status.stdout)["jobs"]] == ["a", "b"]
    assert tuneq("status").returncode == 0
    shown = tuneq("show", "2")
    assert shown.returncode == 0 and "b" in shown.stdout, shown.stderr
    assert tuneq("log", "1").returncode == 0
    done = tuneq("backup", str(tmp_path / "rescued.db"))
    assert done.returncode == 0 and "(2 jobs)" in done.stdout, done.stderr
    with Store(tmp_path / "rescued.db") as rescued:
        assert [j.name for j in rescued.list_jobs()] == ["a", "b"]

    one_line_refusal(tuneq("submit", str(make_job("c"))), "read-only", "remount")
    one_line_refusal(tuneq("cancel", "1"), "read-only", "remount")
    one_line_refusal(tuneq("daemon", "start"), "read-only", "remount")
    assert tuneq("daemon", "status").stdout.strip() == "no worker is running"


def test_a_queue_left_with_its_wal_on_a_read_only_disk_shows_the_commits_in_the_wal(
    mount: Mount, make_job: JobFactory, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """A worker killed before it checkpointed leaves commits in queue.db-wal; read-only, they still show."""
    disk = mount()
    home = disk / "state"
    monkeypatch.setenv("TUNEQ_HOME", str(home))
    assert tuneq("submit", str(make_job("a"))).returncode == 0
    holder = subprocess.Popen(  # holds a connection, then is killed: the WAL is never checkpointed
        [
            sys.executable,
            "-c",
            "import sqlite3,sys,time; c=sqlite3.connect(sys.argv[1]); "
            "c.execute('SELECT 1 FROM jobs').fetchall(); print('open', flush=True); time.sleep(60)",
            str(home / "queue.db"),
        ],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "open"
        assert tuneq("submit", str(make_job("b"))).returncode == 0
    finally:
        holder.kill()
        holder.wait()
    assert (home / "queue.db-wal").stat().st_size > 0
    ro = tmp_path / "ro"
    ro.mkdir()
    _sh("mount", "--bind", str(disk), str(ro))  # a second view of the disk, made read-only
    try:
        _sh("mount", "-o", "remount,bind,ro", str(ro))
        monkeypatch.setenv("TUNEQ_HOME", str(ro / "state"))
        status = tuneq("status", "--json")
        assert status.returncode == 0, status.stderr
        assert [j["name"] for j in json.loads(status.stdout)["jobs"]] == ["a", "b"]
    finally:
        subprocess.run(["umount", "-l", str(ro)], check=False)


def test_a_read_only_queue_db_stops_the_worker_at_start_instead_of_looping(
    mount: Mount, home: Path, make_job: JobFactory
) -> None:
    """queue.db alone is read-only (its directory is not): `daemon start` used to say "worker started"
    and the worker then failed every turn, for ever."""
    assert tuneq("submit", str(make_job("a"))).returncode == 0
    mount(bind=home / "queue.db")
    one_line_refusal(tuneq("daemon", "start"), "queue.db", "read-only")
    assert tuneq("daemon", "status").returncode == 1
    started = time.monotonic()
    worker = tuneq("worker", timeout=60)
    assert worker.returncode == 2 and "read-only" in worker.stderr, (worker.stdout, worker.stderr)
    assert "Traceback" not in worker.stdout + worker.stderr
    assert time.monotonic() - started < 30
    assert json.loads(tuneq("status", "--json").stdout)["jobs"][0]["state"] == "queued"


def test_daemon_start_on_a_read_only_state_directory_prints_one_line(
    mount: Mount, make_job: JobFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    """No queue.db yet and nothing writable: the worker's log cannot even be opened."""
    disk = mount()
    (disk / "state").mkdir()
    remount_read_only(disk)
    monkeypatch.setenv("TUNEQ_HOME", str(disk / "state"))
    one_line_refusal(tuneq("daemon", "start"), str(disk / "state"), "read-only")
    worker = tuneq("worker")
    assert worker.returncode != 0 and "Traceback" not in worker.stderr, worker.stderr


# --- a full disk --------------------------------------------------------------------------------------


@pytest.mark.parametrize("free_kib", [0, 12])  # full; room for the job file but not the data's copy
def test_submit_on_a_full_disk_prints_one_line_and_loses_nothing(
    mount: Mount, make_job: JobFactory, monkeypatch: pytest.MonkeyPatch, free_kib: int
) -> None:
    disk = mount("2m")
    home = disk / "state"
    monkeypatch.setenv("TUNEQ_HOME", str(home))
    assert tuneq("submit", str(make_job("a"))).returncode == 0
    filler = disk / "filler"
    fd = os.open(filler, os.O_WRONLY | os.O_CREAT)
    try:  # fill the disk to the last block, then give back free_kib
        while os.write(fd, b"\0" * 4096):
            pass
    except OSError:
        os.ftruncate(fd, max(0, os.fstat(fd).st_size - free_kib * 1024))
    finally:
        os.close(fd)
    one_line_refusal(tuneq("submit", str(make_job("b"))), "space left", "free space")
    filler.unlink()
    jobs = json.loads(tuneq("status", "--json").stdout)["jobs"]
    assert [j["name"] for j in jobs] == ["a"]
    assert tuneq("submit", str(make_job("b"))).returncode == 0


# --- a damaged queue --------------------------------------------------------------------------------


def test_backup_of_a_queue_with_a_corrupt_page_fails_and_writes_nothing(home: Path, tmp_path: Path) -> None:
    """SQLite's backup copies pages as they are; `count(*)` reads only the small index, so a garbage
    table page went unnoticed and the backup "succeeded"."""
    home.mkdir(parents=True)
    db = home / "queue.db"
    conn = sqlite3.connect(db, isolation_level=None)
    conn.executescript(MIGRATIONS[0])
    conn.execute(f"PRAGMA user_version = {len(MIGRATIONS)}")
    for i in range(200):
        conn.execute(
            "INSERT INTO jobs (name, spec_text, spec_hash, source_path, state, created_at) "
            "VALUES (?, ?, 'h', '/p', 'queued', 1.0)",
            (f"j{i}", "x" * 2000),
        )
    page_size, pages = (conn.execute(f"PRAGMA {p}").fetchone()[0] for p in ("page_size", "page_count"))
    conn.close()
    with db.open("r+b") as f:  # a page in the middle of the jobs table becomes garbage
        f.seek(page_size * (pages // 2))
        f.write(os.urandom(page_size))
    done = tuneq("backup", str(tmp_path / "copy.db"))
    one_line_refusal(done, "damaged", str(db), ".recover", code=1)
    assert not (tmp_path / "copy.db").exists()
    assert list(tmp_path.glob(".copy.db*")) == []
