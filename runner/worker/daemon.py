"""``tuneq daemon start|stop|status|install|uninstall``: the worker detached into its own session, with its
pid/lock file (``worker.pid``) and log (``worker.log``) in the state directory, so it outlives the SSH
session; or, once installed, as a systemd user unit (:mod:`runner.worker.unit`).

Either way one worker runs per state directory (its lock). Where the unit is this state directory's and
systemd answers, ``start`` and ``stop`` go through ``systemctl --user``, so systemd knows the worker's
state; a worker detached before the unit was installed is still stopped by its pid.
"""

from __future__ import annotations

import getpass
import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from runner.core.paths import state_dir
from runner.worker import unit
from runner.worker.linger import lingering
from runner.worker.pidfile import PidLock
from runner.worker.unit import LOG_FILE, UNIT_NAME, UnitError


@dataclass(frozen=True)
class DaemonStatus:
    """Whether the state directory's worker runs, its pid and its log."""

    pid: int | None
    log: Path

    @property
    def running(self) -> bool:
        """A worker holds the lock."""
        return self.pid is not None


def status() -> DaemonStatus:
    """The state directory's worker, if one runs."""
    return DaemonStatus(PidLock(state_dir()).holder(), state_dir() / LOG_FILE)


def start(timeout_s: float = 10.0) -> tuple[DaemonStatus, bool]:
    """Start a detached worker (the unit's, where it manages the worker) unless one runs; return its status
    and whether this call started it.

    Raises :class:`RuntimeError` with the log's tail if the new worker exits at once.
    """
    current = status()
    if current.running:
        return current, False
    if unit.manages_worker():
        if (done := unit.systemctl("start", UNIT_NAME)).returncode != 0:
            raise RuntimeError(f"systemctl --user start {UNIT_NAME} failed: {done.stderr.strip()}")
        return _wait_for_lock(None, current.log, timeout_s)
    with current.log.open("ab") as log:
        proc = subprocess.Popen(
            [sys.executable, "-m", "runner.worker"],
            cwd=state_dir(),
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    return _wait_for_lock(proc, current.log, timeout_s)


def _wait_for_lock(
    proc: subprocess.Popen[bytes] | None, log: Path, timeout_s: float
) -> tuple[DaemonStatus, bool]:
    """Wait until the new worker (``proc``, or the unit's) holds the lock; False if another start won.
    :class:`RuntimeError` with the log's tail if it exited at once."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        now = status()
        if now.running and (proc is None or now.pid == proc.pid):
            return now, True
        if proc is not None and proc.poll() is not None:
            if now.running:  # another start won the race
                return now, False
            raise RuntimeError(f"the worker exited at once (code {proc.returncode}):\n{_tail(log)}")
        time.sleep(0.05)
    raise RuntimeError(f"the worker did not take its lock within {timeout_s:g}s; see {log}")


def stop(timeout_s: float = 60.0) -> DaemonStatus:
    """Stop the worker (``systemctl --user stop`` for the unit's, else SIGTERM) and wait until it has
    stopped (it interrupts its running job first)."""
    if unit.manages_worker():  # also cancels a restart systemd has scheduled
        unit.systemctl("stop", UNIT_NAME)  # returns once the worker has stopped
    current = status()
    if current.pid is None:
        return current
    os.kill(current.pid, signal.SIGTERM)
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline and status().running:
        time.sleep(0.1)
    return status()


def _tail(path: Path, lines: int = 20) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return ""


def install() -> list[str]:
    """Install and enable the systemd user unit, and start it unless a worker runs; what was done and what
    is left to the user, one line each. :class:`UnitError` where systemd is not the init."""
    if not unit.systemd_booted():
        raise UnitError(
            "systemd does not run this machine (no /run/systemd/system, as in many rented containers): "
            "nothing to install; keep using `tuneq daemon start` (again after a reboot)"
        )
    path = unit.write_unit()
    env_file, env_warning = unit.ensure_env_file()
    lines = [f"wrote {path}", f"secrets (HF_TOKEN, a webhook URL) go in {env_file}, never in the unit"]
    lines += [f"warning: {env_warning}"] if env_warning else []
    if not unit.manager_answers():
        return [
            *lines,
            "no systemd user manager answers here: from a login session run "
            f"`systemctl --user daemon-reload && systemctl --user enable --now {UNIT_NAME}`",
        ]
    for args in (("daemon-reload",), ("enable", UNIT_NAME)):
        if (done := unit.systemctl(*args)).returncode != 0:
            raise UnitError(f"systemctl --user {' '.join(args)} failed: {done.stderr.strip()}")
    running = status()
    if running.running and unit.systemctl("is-active", "--quiet", UNIT_NAME).returncode != 0:
        lines.append(
            f"enabled {UNIT_NAME}; a worker started by `tuneq daemon start` runs (pid {running.pid}): the unit "
            "takes over at the next boot, or now with `tuneq daemon stop && tuneq daemon start` "
            "(its running job is requeued)"
        )
    elif running.running:
        lines.append(
            f"enabled {UNIT_NAME}; it runs (pid {running.pid}): `systemctl --user restart {UNIT_NAME}` applies "
            "the new unit (a running job is requeued)"
        )
    else:
        started, _ = start()
        lines.append(f"enabled and started {UNIT_NAME} (pid {started.pid}); log: {started.log}")
    if not lingering():
        lines.append(
            "warning: lingering is off: the worker stops when you log out and does not start at boot; "
            f"run `loginctl enable-linger {getpass.getuser()}` once (as root: sudo loginctl enable-linger …)"
        )
    return lines


def uninstall() -> list[str]:
    """Stop and disable the unit (its running job is requeued) and delete it; ``worker.env`` is kept."""
    if not unit.unit_path().exists():
        return [f"no {UNIT_NAME} is installed ({unit.unit_path()})"]
    answers = unit.manager_answers()
    if answers:
        unit.systemctl("disable", "--now", UNIT_NAME)
    unit.remove_unit()
    if answers:
        unit.systemctl("daemon-reload")
    kept = state_dir() / unit.ENV_FILE
    return [f"removed {unit.unit_path()}"] + (
        [f"kept {kept} (your secrets): delete it yourself"] if kept.exists() else []
    )
