"""``tuneq daemon install|uninstall`` through the CLI: the systemd user unit it writes passes
``systemd-analyze verify`` (Debian's ``systemd`` package, installed here when missing; in CI a missing one
fails instead of skipping), holds no secret, and the machine without systemd gets one line.

This machine cannot run a systemd user manager (systemd is not its init), so enabling and starting the
unit through ``systemctl --user`` is not exercised here.
"""

from __future__ import annotations

import os
import shutil
import stat
import subprocess
import sys
from pathlib import Path

import pytest

from runner.cli import main
from runner.worker import unit

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
