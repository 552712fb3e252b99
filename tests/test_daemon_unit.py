"""``tuneq daemon install|uninstall`` through the CLI: the systemd user unit it writes passes
``systemd-analyze verify`` (Debian's ``systemd`` package, installed here when missing; in CI a missing one
fails instead of skipping), holds no secret, and the machine without systemd gets one line.

Where root may make a private mount namespace, a real ``systemd --user`` runs the unit (it only needs
``/run/systemd/system`` to exist, as on a machine systemd booted): install, restart after kill -9,
``daemon stop|start|status`` through systemctl, uninstall.
"""

from __future__ import annotations

import os
import shutil
import signal
import stat
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from conftest import JobFactory
from test_worker_process import wait_for

from runner import commands
from runner.cli import main
from runner.core.jobstate import JobState
from runner.store import Store
from runner.worker import daemon, unit

HF = "hf_" + "S3cr3tT0kenValue1234567890"
HOOK = "https://ntfy.example/s3cret-topic-4242"


@pytest.fixture
def systemd_analyze() -> str:
    """``systemd-analyze``, installed with apt-get where it is missing and we are root."""
    if not shutil.which("systemd-analyze") and os.geteuid() == 0 and shutil.which("apt-get"):
        env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
        subprocess.run(["apt-get", "update", "-qq"], env=env, check=False, capture_output=True)
        subprocess.run(
            ["apt-get", "install", "-y", "-qq", "systemd"], env=env, check=False, capture_output=True
        )
    if found := shutil.which("systemd-analyze"):
        return found
    if os.environ.get("CI") == "true":
        pytest.fail("CI=true and systemd-analyze is missing (Debian package systemd)", pytrace=False)
    pytest.skip("systemd-analyze is missing (Debian package systemd)")


@pytest.fixture
def odd_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A state directory whose path needs quoting and escaping in a unit; secrets in the environment;
    the unit directory under tmp_path."""
    state = tmp_path / 'state dir %h $HOME "q"'
    monkeypatch.setenv("TUNEQ_HOME", str(state))
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "config"))
    monkeypatch.setenv("HF_TOKEN", HF)
    monkeypatch.setenv("TUNEQ_WEBHOOK", HOOK)
    return state


def tuneq(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def verify(analyze: str, text: str, where: Path) -> subprocess.CompletedProcess[str]:
    """``systemd-analyze --user verify`` on ``text`` as tuneq-worker.service; it needs a runtime directory."""
    where.mkdir(mode=0o700, exist_ok=True)
    (where / unit.UNIT_NAME).write_text(text)
    env = {**os.environ, "XDG_RUNTIME_DIR": str(where)}
    return subprocess.run(
        [analyze, "--user", "verify", str(where / unit.UNIT_NAME)], capture_output=True, text=True, env=env
    )


def test_the_printed_unit_verifies_and_holds_no_secret(
    systemd_analyze: str, odd_home: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code, text, err = tuneq(capsys, "daemon", "install", "--print")
    assert (code, err) == (0, "")
    checked = verify(systemd_analyze, text, tmp_path / "run")
    assert (checked.returncode, checked.stdout + checked.stderr) == (0, "")
    lines = text.splitlines()
    python = str(Path(sys.executable).absolute())
    assert f'ExecStart="{python}" -m runner.worker' in lines
    assert {"Restart=on-failure", "WantedBy=default.target", "KillMode=mixed"} <= set(lines)
    escaped = str(odd_home).replace("%", "%%")
    assert 'Environment="TUNEQ_HOME=' + escaped.replace('"', '\\"') + '"' in lines
    assert f"EnvironmentFile=-{escaped}/worker.env" in lines
    assert f"StandardOutput=append:{escaped}/worker.log" in lines
    assert HF not in text and HOOK not in text and "s3cret" not in text
    assert not (tmp_path / "config").exists()  # --print writes nothing


def test_verify_catches_a_broken_unit(systemd_analyze: str, odd_home: Path, tmp_path: Path) -> None:
    """The check above can fail: a unit whose interpreter is gone, or with a misspelt key, does not pass."""
    good = unit.current_unit()
    gone = good.replace(f'ExecStart="{Path(sys.executable).absolute()}"', 'ExecStart="/nowhere/python"')
    assert verify(systemd_analyze, gone, tmp_path / "a").returncode != 0
    typo = verify(systemd_analyze, good.replace("KillMode=", "KilMode="), tmp_path / "b")
    assert "Unknown key 'KilMode'" in typo.stdout + typo.stderr


def test_install_without_systemd_says_so_in_one_line(
    odd_home: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(unit, "SYSTEMD_BOOTED", tmp_path / "no-systemd")  # as in most rented containers
    code, out, err = tuneq(capsys, "daemon", "install")
    assert (code, out) == (1, "")
    assert len(err.strip().splitlines()) == 1 and "keep using `tuneq daemon start`" in err
    assert not unit.unit_path().exists()


def test_install_status_uninstall_where_no_user_manager_answers(
    odd_home: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    booted = tmp_path / "systemd-system"
    booted.mkdir()
    monkeypatch.setattr(unit, "SYSTEMD_BOOTED", booted)  # systemd is the init, but no manager answers us
    monkeypatch.setenv("XDG_RUNTIME_DIR", str(tmp_path / "no-runtime"))
    code, out, err = tuneq(capsys, "daemon", "install")
    assert code == 0, err
    assert f"wrote {unit.unit_path()}" in out and "systemctl --user enable --now tuneq-worker.service" in out
    assert unit.unit_path().read_text() == unit.current_unit()
    env_file = odd_home / "worker.env"
    assert stat.S_IMODE(env_file.stat().st_mode) == 0o600 and "HF_TOKEN=" in env_file.read_text()
    assert HF not in env_file.read_text()
    code, out, _ = tuneq(capsys, "daemon", "status")
    assert "systemd unit tuneq-worker.service: installed; no systemd user manager answers here" in out

    env_file.chmod(0o644)
    code, _, err = tuneq(capsys, "daemon", "install")  # again: the unit is rewritten, worker.env kept
    assert code == 0 and f"chmod 600 {env_file}" in err
    monkeypatch.setenv("TUNEQ_HOME", str(tmp_path / "other queue"))
    code, _, err = tuneq(capsys, "daemon", "install")
    assert code == 1 and "runs the worker of another state directory" in err
    assert unit.unit_path().read_text() != unit.current_unit()

    monkeypatch.setenv("TUNEQ_HOME", str(odd_home))
    code, out, _ = tuneq(capsys, "daemon", "uninstall")
    assert code == 0 and f"removed {unit.unit_path()}" in out and f"kept {env_file}" in out
    assert not unit.unit_path().exists() and env_file.exists()
    assert tuneq(capsys, "daemon", "uninstall")[1].startswith("no tuneq-worker.service is installed")


@pytest.fixture
def user_manager(
    systemd_analyze: str, home: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> Iterator[list[str]]:
    """A real systemd user manager in a private mount namespace (where /run/systemd/system exists, as on
    a machine systemd booted); yields the command prefix that runs a program beside it."""
    if os.geteuid() != 0 or not (shutil.which("unshare") and shutil.which("nsenter")):
        pytest.skip("a private mount namespace needs root, unshare and nsenter")
    runtime, config = tmp_path / "runtime", tmp_path / "config"
    runtime.mkdir(mode=0o700)
    monkeypatch.setenv("XDG_RUNTIME_DIR", str(runtime))
    monkeypatch.setenv("XDG_CONFIG_HOME", str(config))
    boot = "mount -t tmpfs tmpfs /run/systemd && mkdir /run/systemd/system && exec /usr/lib/systemd/systemd --user"
    manager = subprocess.Popen(
        ["unshare", "--mount", "--propagation", "private", "sh", "-c", f"mkdir -p /run/systemd && {boot}"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    beside = ["nsenter", f"--mount=/proc/{manager.pid}/ns/mnt", "--"]
    deadline = time.monotonic() + 20
    while subprocess.run(
        [*beside, "systemctl", "--user", "show-environment"], capture_output=True
    ).returncode:
        if manager.poll() is not None or time.monotonic() > deadline:
            manager.kill()
            pytest.skip("no systemd user manager starts on this machine")
        time.sleep(0.2)
    yield beside
    subprocess.run([*beside, "systemctl", "--user", "stop", unit.UNIT_NAME], capture_output=True)
    manager.terminate()
    manager.wait(timeout=30)


def test_a_real_user_manager_runs_restarts_and_stops_the_unit_worker(
    user_manager: list[str], home: Path, make_job: JobFactory
) -> None:
    def tuneq_beside(*argv: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [*user_manager, sys.executable, "-m", "runner", *argv],
            capture_output=True,
            text=True,
            timeout=120,
        )

    def main_pid() -> int:
        show = [*user_manager, "systemctl", "--user", "show", "-p", "MainPID", "--value", unit.UNIT_NAME]
        return int(subprocess.run(show, capture_output=True, text=True).stdout.strip() or 0)

    installed = tuneq_beside("daemon", "install")
    assert installed.returncode == 0, installed.stderr
    assert f"enabled and started {unit.UNIT_NAME}" in installed.stdout
    first = daemon.status().pid
    assert first is not None and first == main_pid()
    assert tuneq_beside("daemon", "start").stdout.startswith(f"worker already running (pid {first})")
    with Store() as store:
        (job,) = commands.submit(store, [make_job("under-systemd")])
        wait_for(lambda: store.get(job.id).state is JobState.SUCCEEDED)

    os.kill(first, signal.SIGKILL)  # Restart=on-failure brings it back (RestartSec=10)
    wait_for(lambda: daemon.status().pid not in (None, first), timeout=30)
    assert daemon.status().pid == main_pid()

    stopped = tuneq_beside("daemon", "stop")
    assert stopped.returncode == 0 and "stopped" in stopped.stdout and not daemon.status().running
    status = tuneq_beside("daemon", "status")
    assert status.returncode == 1 and f"systemd unit {unit.UNIT_NAME}: enabled, inactive" in status.stdout
    started = tuneq_beside("daemon", "start")
    assert started.returncode == 0 and daemon.status().pid == main_pid() != 0

    os.kill(daemon.status().pid or 0, signal.SIGKILL)  # a restart is due in 10 s...
    assert tuneq_beside("daemon", "stop").returncode == 0
    time.sleep(12)  # ...and was cancelled by the stop
    assert not daemon.status().running

    removed = tuneq_beside("daemon", "uninstall")
    assert removed.returncode == 0 and not daemon.status().running and not unit.unit_path().exists()
    assert "worker" in (home / "worker.log").read_text()
