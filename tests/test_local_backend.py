"""The local backend with real processes: sessions, log files, group stop, pids it did not start."""

from __future__ import annotations

import os
import signal
import sys
import time
from collections.abc import Callable
from pathlib import Path

import pytest
from conftest import gone

from runner.backends.base import PIPELINE_CMD_ENV, Launch, Outcome, pipeline_command
from runner.backends.local import SCAN_EVERY_S, UNKNOWN_EXIT, LocalBackend
from runner.spec import parse_spec

SPEC = parse_spec('name = "x"\n[model]\nbase = "m"\n[data]\nsource = "d.jsonl"\n', "test")


def script(tmp_path: Path, body: str) -> list[str]:
    """A pipeline command running ``body`` (``sys.argv[1]`` is the run directory)."""
    path = tmp_path / "pipe.py"
    path.write_text("import os, signal, subprocess, sys, time\n" + body)
    return [sys.executable, str(path)]


def launch(tmp_path: Path) -> Launch:
    run_dir = tmp_path / "run"
    run_dir.mkdir(exist_ok=True)
    return Launch("7", run_dir, SPEC)


def wait_until(condition: Callable[[], bool], timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.02)


def wait_outcome(backend: LocalBackend, handle: str) -> Outcome:
    deadline = time.monotonic() + 10
    while (outcome := backend.poll(handle)) is None:
        assert time.monotonic() < deadline
        time.sleep(0.02)
    return outcome


def test_default_command_and_override(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(PIPELINE_CMD_ENV, raising=False)
    assert pipeline_command() == [sys.executable, "-m", "runner.pipeline"]
    monkeypatch.setenv(PIPELINE_CMD_ENV, "python3 '/a b/fake.py'")
    assert pipeline_command() == ["python3", "/a b/fake.py"]
    assert pipeline_command("python") == ["python", "-m", "runner.pipeline"]  # a container's or a node's own


def test_output_goes_to_log_and_the_child_has_its_own_session(tmp_path: Path) -> None:
    backend = LocalBackend(
        script(
            tmp_path,
            "print('hello', os.getcwd()); print('oops', file=sys.stderr)\n"
            "print(os.getsid(0) == os.getpid()); sys.exit(4)\n",
        )
    )
    run = launch(tmp_path)
    (run.run_dir / "log.txt").write_text("earlier\n")
    handle = backend.start(run)
    assert wait_outcome(backend, handle) == Outcome(4, "exit code 4")
    assert (run.run_dir / "log.txt").read_text().splitlines() == [
        "earlier",
        f"hello {run.run_dir}",
        "oops",
        "True",
    ]


def test_stop_kills_the_whole_group_after_the_grace_period(tmp_path: Path) -> None:
    backend = LocalBackend(
        script(
            tmp_path,
            (
                "note = lambda *_: open(os.path.join(sys.argv[1], 'sigterm'), 'w').close()\n"
                "signal.signal(signal.SIGTERM, note)  # noted, and survived\n"
                "child = subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(60)'])\n"
                "open(os.path.join(sys.argv[1], 'grandchild'), 'w').write(str(child.pid))\n"
                "time.sleep(60)\n"
            ),
        )
    )
    run = launch(tmp_path)
    handle = backend.start(run)
    marker = run.run_dir / "grandchild"
    wait_until(lambda: marker.exists() and marker.read_text() != "")
    grandchild = int(marker.read_text())
    started = time.monotonic()
    backend.stop(handle, grace_s=0.5)
    assert time.monotonic() - started >= 0.5  # the grace period was given...
    assert (run.run_dir / "sigterm").exists()  # ...after a SIGTERM, which it survived...
    assert backend.poll(handle) == Outcome(-9, "killed by SIGKILL")  # ...so SIGKILL ended it
    wait_until(lambda: gone(grandchild))  # and its group with it
    backend.stop(handle)  # idempotent


def test_a_pid_it_did_not_start_is_polled_and_stopped(tmp_path: Path) -> None:
    starter = LocalBackend(script(tmp_path, "time.sleep(60)\n"))
    handle = starter.start(launch(tmp_path))
    stranger = LocalBackend()  # as after a worker restart
    assert stranger.poll(handle) is None
    stranger.stop(handle, grace_s=5)
    assert starter.poll(handle) == Outcome(-15, "killed by SIGTERM")  # reaped by its parent
    outcome = stranger.poll(handle)
    assert outcome == Outcome(UNKNOWN_EXIT, "exit status unknown (started by an earlier worker)")


@pytest.mark.parametrize("restarted", [False, True], ids=["own-child", "after-worker-restart"])
def test_a_killed_leader_takes_its_group_and_escaped_descendants_along(
    tmp_path: Path, restarted: bool
) -> None:
    """kill -9 of the leader (as the OOM killer does): its group and a setsid'd descendant die with it."""
    backend = LocalBackend(
        script(
            tmp_path,
            (
                "sleeper = [sys.executable, '-c', 'import time; time.sleep(60)']\n"
                "grouped = subprocess.Popen(sleeper)\n"
                "escaped = subprocess.Popen(sleeper, start_new_session=True)\n"
                "open(os.path.join(sys.argv[1], 'kids.tmp'), 'w').write(f'{grouped.pid} {escaped.pid}')\n"
                "os.rename(os.path.join(sys.argv[1], 'kids.tmp'), os.path.join(sys.argv[1], 'kids'))\n"
                "time.sleep(60)\n"
            ),
        )
    )
    run = launch(tmp_path)
    handle = backend.start(run)
    watcher = LocalBackend() if restarted else backend
    while not (run.run_dir / "kids").exists():
        assert watcher.poll(handle) is None
        time.sleep(0.02)
    grouped, escaped = map(int, (run.run_dir / "kids").read_text().split())
    time.sleep(SCAN_EVERY_S)  # the next regular poll records the family while the leader lives
    assert watcher.poll(handle) is None
    os.kill(int(handle), signal.SIGKILL)
    outcome = wait_outcome(watcher, handle)
    assert outcome.exit_code == (UNKNOWN_EXIT if restarted else -9)
    deadline = time.monotonic() + 5
    while not (gone(grouped) and gone(escaped)):
        assert time.monotonic() < deadline, f"left running: {[p for p in (grouped, escaped) if not gone(p)]}"
        time.sleep(0.02)
    if restarted:
        assert wait_outcome(backend, handle) == Outcome(-9, "killed by SIGKILL")  # its parent reaps it
