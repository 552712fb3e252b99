"""The queue verbs through ``tuneq``'s own parser: messages, exit codes, ``--json`` shapes, the daemon."""

from __future__ import annotations

import io
import json
import os
import socket
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest
from conftest import FAKE_PIPELINE, JobFactory

from runner.backends.local import LocalBackend
from runner.cli import main
from runner.core.jobstate import JobState
from runner.store import SCHEMA_VERSION, Owner, Progress, Store
from runner.worker import daemon
from runner.worker.clock import SystemClock
from runner.worker.linger import linger_warning
from runner.worker.loop import Flags, tick
from runner.worker.steps import WorkerConfig, WorkerRuntime


def tuneq(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out = capsys.readouterr()
    return code, out.out, out.err


def finish(store: Store, job_id: int, state: JobState) -> None:
    store.claim("w", now=time.time(), lease_s=60)
    store.transition(job_id, JobState.RUNNING, state, now=time.time(), reason="test")


def test_submit_queues_and_reports(home: Path, make_job: JobFactory, capsys) -> None:
    code, out, err = tuneq(capsys, "submit", str(make_job("a")), str(make_job("b")), "--priority", "4")
    assert code == 0
    assert out.splitlines() == ["job 1 queued: a (priority 4)", "job 2 queued: b (priority 4)"]
    assert "tuneq daemon start" in err  # no worker yet


def test_an_invalid_file_is_refused_and_nothing_queued(
    home: Path, make_job: JobFactory, tmp_path: Path, capsys
) -> None:
    bad = tmp_path / "bad.toml"
    bad.write_text(
        'name = "bad"\n[model]\nbase = "x"\n[data]\nsource = "d.jsonl"\n[train]\nlearnin_rate = 1\n'
    )
    code, _, err = tuneq(capsys, "submit", str(make_job("ok")), str(bad))
    assert code == 2
    assert f"{bad}:7: train.learnin_rate: unknown key" in err
    assert "did you mean 'learning_rate'?" in err
    assert "Traceback" not in err
    assert tuneq(capsys, "status", "--json")[1].count('"id"') == 0


def test_status_table_and_json(home: Path, make_job: JobFactory, capsys) -> None:
    assert "queue is empty" in tuneq(capsys, "status")[1]
    tuneq(capsys, "submit", str(make_job("alpha")))
    code, out, _ = tuneq(capsys, "status")
    assert code == 0
    header, row = out.splitlines()
    assert header.split() == ["ID", "NAME", "STATE", "STAGE", "PROGRESS", "LOSS", "AGE"]
    assert row.split()[:6] == ["1", "alpha", "queued", "-", "-", "-"]
    data = json.loads(tuneq(capsys, "status", "--json")[1])
    assert data["v"] == 1 and data["workers"] == []
    assert set(data["jobs"][0]) == {
        "id",
        "name",
        "state",
        "priority",
        "attempts",
        "retries_left",
        "stage",
        "step",
        "max_steps",
        "loss",
        "eta_s",
        "reason",
        "cancel_requested",
        "created_at",
        "started_at",
        "finished_at",
        "run_dir",
        "spec_hash",
        "source_path",
        "worker",
        "node",
    }


def test_submit_json_lists_the_queued_jobs_or_every_problem(home: Path, make_job: JobFactory, capsys) -> None:
    good, bad = make_job("alpha"), make_job("beta")
    bad.write_text(bad.read_text() + "[train]\nlearnin_rate = 1\n")
    code, out, _ = tuneq(capsys, "submit", "--json", str(good), str(bad))
    refused = json.loads(out)
    assert code == 2 and refused["jobs"] == [] and refused["v"] == 1
    (problem,) = refused["problems"]
    assert problem["key"] == "train.learnin_rate" and problem["line"] and "learning_rate" in problem["hint"]
    code, out, _ = tuneq(capsys, "submit", "--json", str(good))
    queued = json.loads(out)
    assert code == 0 and queued["problems"] == [] and [j["name"] for j in queued["jobs"]] == ["alpha"]


def test_show_and_json(home: Path, make_job: JobFactory, capsys) -> None:
    path = make_job("alpha")
    tuneq(capsys, "submit", str(path))
    code, out, _ = tuneq(capsys, "show", "1")
    assert code == 0 and "state:          queued" in out
    job = json.loads(tuneq(capsys, "show", "1", "--json")[1])["job"]
    assert job["spec_text"] == path.read_text()
    assert job["events_path"].endswith("runs/1/events.jsonl")
    with Store() as store:
        store.claim("w", now=time.time(), lease_s=60)
        store.update_progress(
            1, Owner("w", 1), Progress("train", 12, 60, 0.0025502571370452642, 30.0), now=time.time()
        )
    out = tuneq(capsys, "show", "1")[1]
    assert "loss:           0.0026\n" in out and "progress:       12/60 (20%)" in out


def test_unknown_ids_and_wrong_states_are_one_line_errors(home: Path, make_job: JobFactory, capsys) -> None:
    tuneq(capsys, "submit", str(make_job("a")))
    for argv in (
        ["show", "9"],
        ["log", "9"],
        ["cancel", "9"],
        ["retry", "9"],
        ["remove", "9"],
        ["priority", "9", "1"],
        ["retry", "1"],
        ["remove", "1"],
    ):
        code, _, err = tuneq(capsys, *argv)
        assert code == 2, argv
        assert len(err.strip().splitlines()) == 1, (argv, err)
        assert err.startswith("tuneq: job "), err


def test_cancel_retry_priority_remove(home: Path, make_job: JobFactory, capsys) -> None:
    for name in ("a", "b", "c"):
        tuneq(capsys, "submit", str(make_job(name)))
    # 9 is unknown, 1 is still cancelled
    assert tuneq(capsys, "cancel", "1", "9")[:2] == (2, "job 1 cancelled\n")
    assert tuneq(capsys, "retry", "1")[0] == 0
    assert tuneq(capsys, "priority", "3", "7")[1] == "job 3 priority 7\n"
    with Store() as store:
        assert store.next_queued().id == 3  # type: ignore[union-attr]
        finish(store, 3, JobState.FAILED)
        run_dir = Path(store.get(3).run_dir)
    assert tuneq(capsys, "remove", "3")[1] == "job 3 removed\n"
    assert run_dir.exists()  # kept without --artifacts


def test_cancel_running_is_a_request(home: Path, make_job: JobFactory, capsys) -> None:
    tuneq(capsys, "submit", str(make_job("a")))
    with Store() as store:
        store.claim("w", now=time.time(), lease_s=60)
    assert "cancel requested" in tuneq(capsys, "cancel", "1")[1]
    assert tuneq(capsys, "status")[1].splitlines()[1].split()[2] == "cancelling"


def test_remove_artifacts_asks_first(
    home: Path, make_job: JobFactory, capsys, monkeypatch: pytest.MonkeyPatch
) -> None:
    tuneq(capsys, "submit", str(make_job("a")))
    tuneq(capsys, "submit", str(make_job("b")))
    with Store() as store:
        for job_id in (1, 2):
            finish(store, job_id, JobState.SUCCEEDED)
        dirs = [Path(store.get(i).run_dir) for i in (1, 2)]
    monkeypatch.setattr("sys.stdin", io.StringIO("n\n"))
    code, _, err = tuneq(capsys, "remove", "1", "--artifacts")
    assert (code, dirs[0].exists()) == (1, True) and "nothing removed" in err
    monkeypatch.setattr("sys.stdin", io.StringIO("y\n"))
    assert tuneq(capsys, "remove", "1", "--artifacts")[0] == 0
    assert not dirs[0].exists()
    assert tuneq(capsys, "remove", "2", "--artifacts", "--yes")[0] == 0
    assert not dirs[1].exists()


def test_log_prints_events_and_follow_ends_with_the_job(home: Path, make_job: JobFactory, capsys) -> None:
    tuneq(capsys, "submit", str(make_job("a", "steps=2")))
    assert tuneq(capsys, "log", "1") == (0, "", "")
    with Store() as store:
        w = WorkerRuntime.create({"local": LocalBackend(FAKE_PIPELINE)}, WorkerConfig(), time.time())
        while not store.get(1).state.is_finished:
            tick(store, SystemClock(), w, Flags())
            time.sleep(0.05)
    code, out, _ = tuneq(capsys, "log", "1", "-f")
    lines = out.splitlines()
    assert code == 0
    assert "step 1/2" in lines[1] and lines[-1].endswith("job succeeded")


@pytest.mark.parametrize("damage", ["corrupt", "newer"])
def test_a_broken_database_is_a_clear_error(home: Path, capsys, damage: str) -> None:
    db = home / "queue.db"
    home.mkdir(parents=True, exist_ok=True)
    if damage == "corrupt":
        db.write_bytes(b"\x00garbage" * 512)
    else:
        Store(db).close()
        with sqlite3.connect(db) as conn:
            conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION + 3}")
    code, out, err = tuneq(capsys, "status")
    assert code == 1 and out == ""
    assert len(err.strip().splitlines()) == 1 and str(db) in err and "Traceback" not in err


def test_daemon_start_status_stop(home: Path, make_job: JobFactory, capsys) -> None:
    code, out, _ = tuneq(capsys, "daemon", "status")
    assert (code, out) == (1, "no worker is running\n")
    code, out, _ = tuneq(capsys, "daemon", "start")
    try:
        assert code == 0 and out.startswith("worker started (pid ")
        pid = daemon.status().pid
        assert pid is not None and os.getsid(pid) == pid  # detached into its own session
        again = tuneq(capsys, "daemon", "start")[1]
        assert again == f"worker already running (pid {pid}); log: {home}/worker.log\n"
        assert tuneq(capsys, "daemon", "status")[0] == 0
        tuneq(capsys, "submit", str(make_job("a")))
        with Store() as store:
            deadline = time.monotonic() + 20
            while store.get(1).state is not JobState.SUCCEEDED:
                assert time.monotonic() < deadline
                time.sleep(0.05)
    finally:
        code, out, _ = tuneq(capsys, "daemon", "stop")
    assert (code, out) == (0, f"worker (pid {pid}) stopped\n")
    assert "worker" in (home / "worker.log").read_text()
    assert tuneq(capsys, "daemon", "stop")[1] == "no worker is running\n"


def test_daemon_status_counts_a_live_worker_without_the_lock(
    home: Path, make_job: JobFactory, capsys
) -> None:
    from runner.store import WorkerInfo, default_path

    home.mkdir(parents=True, exist_ok=True)
    extra = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])  # a `worker --extra`
    try:
        with Store(default_path()) as store:
            info = WorkerInfo("extra", socket.gethostname(), extra.pid, 0, 0)
            store.heartbeat(info, now=time.time(), lease_s=60)
        code, out, _ = tuneq(capsys, "daemon", "status")
        assert (code, out.splitlines()[0]) == (
            0,
            "1 worker running without this state directory's lock (--extra or another host): "
            f"pid {extra.pid} on {socket.gethostname()}",
        )
        assert "tuneq daemon start" not in tuneq(capsys, "submit", str(make_job("a")))[2]  # submit agrees
    finally:
        extra.kill()
        extra.wait()
    assert tuneq(capsys, "daemon", "status")[:2] == (1, "no worker is running\n")  # the same rule as submit's


def test_linger_warning(tmp_path: Path) -> None:
    systemd, linger = tmp_path / "systemd", tmp_path / "linger"
    systemd.mkdir()
    linger.mkdir()
    session, service = tmp_path / "session", tmp_path / "service"
    session.write_text("0::/user.slice/user-1000.slice/session-4.scope\n")
    service.write_text("0::/user.slice/user-1000.slice/user@1000.service/app.slice/x.service\n")
    warning = linger_warning(user="ana", cgroup=session, systemd=systemd, linger_dir=linger)
    assert warning is not None and "loginctl enable-linger ana" in warning
    assert linger_warning(user="ana", cgroup=service, systemd=systemd, linger_dir=linger) is None
    assert linger_warning(user="ana", cgroup=session, systemd=tmp_path / "none", linger_dir=linger) is None
    (linger / "ana").touch()
    assert linger_warning(user="ana", cgroup=session, systemd=systemd, linger_dir=linger) is None


def test_submit_warns_when_the_only_worker_row_is_a_dead_process(
    home: Path, make_job: JobFactory, capsys
) -> None:
    from runner.store import WorkerInfo, default_path

    home.mkdir(parents=True, exist_ok=True)
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    with Store(default_path()) as store:  # a worker killed before it could unregister
        store.heartbeat(WorkerInfo("gone", socket.gethostname(), dead.pid, 0, 0), now=time.time(), lease_s=60)
    assert "tuneq daemon start" in tuneq(capsys, "submit", str(make_job("a")))[2]


@pytest.mark.parametrize("name", ["[/]", "a/b", "\x1b[2Jwiped", "-rf", ""])
def test_submit_refuses_a_name_the_job_file_could_not_have(
    home: Path, make_job: JobFactory, name: str
) -> None:
    job = make_job("ok")
    command = [sys.executable, "-m", "runner", "submit", str(job), f"--name={name}"]
    done = subprocess.run(command, capture_output=True, text=True, timeout=60, check=False)
    assert done.returncode == 2, done
    assert done.stderr.startswith("--name: ") and "a job name is" in done.stderr
    assert len(done.stderr.splitlines()) == 1 and "\x1b" not in done.stderr
    with Store() as store:
        assert store.list_jobs() == []  # nothing queued
    ok = subprocess.run(
        [*command[:-1], "--name=Mon job 2"], capture_output=True, text=True, timeout=60, check=False
    )
    assert (ok.returncode, ok.stdout) == (0, "job 1 queued: Mon job 2 (priority 0)\n"), ok.stderr


def test_status_and_show_print_old_names_without_escapes(home: Path, make_job: JobFactory, capsys) -> None:
    """A name queued before ``--name`` was checked: no escape sequence or line break reaches the terminal."""
    assert tuneq(capsys, "submit", str(make_job("ok")))[0] == 0
    with Store() as store, sqlite3.connect(store.path) as conn:  # as an old queue may hold it
        conn.execute("UPDATE jobs SET name = ? WHERE id = 1", ("\x1b]0;pwned\x07\x1b[31mred\nfake 9",))
    code, out, _ = tuneq(capsys, "status")
    assert code == 0 and "\x1b" not in out and "\x07" not in out
    assert out.splitlines()[1].split()[:3] == ["1", "red", "fake"]
    code, out, _ = tuneq(capsys, "show", "1")
    assert code == 0 and "\x1b" not in out
    assert "name:           red fake 9" in out.splitlines()
