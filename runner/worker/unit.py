"""``tuneq daemon install|uninstall``: the worker as a systemd user unit, so it starts at boot and comes
back after a crash.

The unit (``~/.config/systemd/user/tuneq-worker.service``) runs this interpreter's ``-m runner.worker``
for the current state directory, appends its output to ``worker.log`` there (as ``daemon start`` does),
and reads secrets (``HF_TOKEN``, a webhook URL) from ``worker.env`` there: a file the user fills in,
created empty with mode 0600. No secret value is ever written into the unit. ``KillMode=mixed``: a stop
sends SIGTERM to the worker alone, which stops its pipelines with their grace period and requeues their
jobs, as ``daemon stop`` does. One unit per user, for one state directory.

Where systemd is not the init (many rented containers: no ``/run/systemd/system``) there is nothing to
install; ``daemon start`` remains.
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Mapping
from pathlib import Path

from runner.core.paths import state_dir

UNIT_NAME = "tuneq-worker.service"
ENV_FILE = "worker.env"
LOG_FILE = "worker.log"  # the worker's output, in the state directory: the unit's and `daemon start`'s
SYSTEMD_BOOTED = Path("/run/systemd/system")  # present when systemd is the machine's init
STOP_TIMEOUT_S = 90  # above the pipelines' grace period (20 s) and the notification drain (10 s)
# The worker's own settings, copied into the unit where set (none of them is a secret).
PASSED_ENV = (
    "PATH",
    "PYTHONPATH",
    "LD_LIBRARY_PATH",
    "CUDA_VISIBLE_DEVICES",
    "DOCKER_HOST",
    "HF_HOME",
    "HF_HUB_CACHE",
    "HF_HUB_OFFLINE",
    "XDG_CACHE_HOME",
    "TUNEQ_CACHE",
    "TUNEQ_NODE_DIR",
    "TUNEQ_PIPELINE_CMD",
)
ENV_FILE_TEMPLATE = """\
# Secrets for the tuneq worker unit ({unit}), one NAME=value a line; keep this file mode 0600.
# It is read when the worker starts: `systemctl --user restart tuneq-worker` after editing.
# HF_TOKEN=hf_...
# WANDB_API_KEY=...
# TUNEQ_WEBHOOK=https://ntfy.sh/your-topic     (named by url_env in [notify] / notify.toml)
"""


class UnitError(Exception):
    """The unit cannot be installed or removed as asked (one line for the user)."""


def unit_path() -> Path:
    """Where the user's unit file goes: ``$XDG_CONFIG_HOME/systemd/user`` (else ``~/.config/...``)."""
    config = os.environ.get("XDG_CONFIG_HOME") or Path.home() / ".config"
    return Path(config) / "systemd" / "user" / UNIT_NAME


def systemd_booted() -> bool:
    """Whether systemd runs this machine (the test ``sd_booted()`` makes)."""
    return SYSTEMD_BOOTED.is_dir()


def render_unit(state: Path, python: Path, environ: Mapping[str, str]) -> str:
    """The unit's text for the queue in ``state``, run by ``python``, with the settings in
    :data:`PASSED_ENV` that ``environ`` has."""
    env = {"TUNEQ_HOME": str(state), "PYTHONUNBUFFERED": "1"}
    env |= {name: environ[name] for name in PASSED_ENV if environ.get(name)}
    lines = [
        f"# Written by `tuneq daemon install`; `tuneq daemon uninstall` removes it. Secrets: {state / ENV_FILE}.",
        "[Unit]",
        f"Description=tuneq worker for {_escape(str(state))}",
        "StartLimitIntervalSec=300",
        "StartLimitBurst=5",
        "",
        "[Service]",
        "Type=exec",
        f"ExecStart={_quote(str(python), exec_line=True)} -m runner.worker",
        f"WorkingDirectory={_escape(str(state))}",
        *(f"Environment={_quote(f'{name}={value}')}" for name, value in env.items()),
        f"EnvironmentFile=-{_escape(str(state / ENV_FILE))}",
        f"StandardOutput=append:{_escape(str(state / LOG_FILE))}",
        "StandardError=inherit",
        "KillMode=mixed",
        f"TimeoutStopSec={STOP_TIMEOUT_S}",
        "Restart=on-failure",
        "RestartSec=10",
        "",
        "[Install]",
        "WantedBy=default.target",
        "",
    ]
    return "\n".join(lines)


def current_unit() -> str:
    """The unit for this state directory and interpreter, from this process's environment."""
    return render_unit(state_dir().absolute(), Path(sys.executable).absolute(), os.environ)


def installed_here() -> bool:
    """A unit is installed and runs this state directory's queue."""
    return _home_line(current_unit()) in _installed_text().splitlines()


def write_unit() -> Path:
    """Write the unit file; :class:`UnitError` if the installed unit serves another state directory."""
    text, path = current_unit(), unit_path()
    if (old := _installed_text()) and _home_line(text) not in old.splitlines():
        raise UnitError(
            f"{path} runs the worker of another state directory ({_home_line(old) or 'unknown'}): "
            "run `tuneq daemon uninstall` with that TUNEQ_HOME first (one unit per user)"
        )
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")
    return path


def ensure_env_file() -> tuple[Path, str | None]:
    """Create ``worker.env`` (empty but for comments, mode 0600) if missing; a warning if others may read it."""
    path = state_dir() / ENV_FILE
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        if path.stat().st_mode & 0o077:
            return path, f"{path} can be read by others: run `chmod 600 {path}`"
        return path, None
    with os.fdopen(fd, "w", encoding="utf-8") as handle:
        handle.write(ENV_FILE_TEMPLATE.format(unit=UNIT_NAME))
    return path, None


def remove_unit() -> bool:
    """Delete the unit file; False if there was none."""
    try:
        unit_path().unlink()
    except FileNotFoundError:
        return False
    return True


def systemctl(*args: str) -> subprocess.CompletedProcess[str]:
    """``systemctl --user ARGS`` (output captured)."""
    return subprocess.run(
        ["systemctl", "--user", *args], capture_output=True, text=True, timeout=STOP_TIMEOUT_S + 30
    )


def manager_answers() -> bool:
    """A systemd user manager answers this process (a login session, or lingering with XDG_RUNTIME_DIR)."""
    if not systemd_booted():
        return False
    try:
        return systemctl("show-environment").returncode == 0
    except (OSError, subprocess.TimeoutExpired):
        return False


def unit_state() -> str | None:
    """``enabled, active`` and the like for an installed unit of this state directory, else ``None``."""
    if not installed_here():
        return None
    if not manager_answers():
        return "installed; no systemd user manager answers here"
    enabled = systemctl("is-enabled", UNIT_NAME).stdout.strip() or "unknown"
    active = systemctl("is-active", UNIT_NAME).stdout.strip() or "unknown"
    return f"{enabled}, {active}"


def manages_worker() -> bool:
    """``daemon start``/``stop`` go through systemd: the unit is this state directory's and systemd answers."""
    return installed_here() and manager_answers()


def _installed_text() -> str:
    try:
        return unit_path().read_text(encoding="utf-8")
    except FileNotFoundError:
        return ""


def _home_line(text: str) -> str:
    return next((line for line in text.splitlines() if line.startswith('Environment="TUNEQ_HOME=')), "")


def _escape(value: str) -> str:
    """A value with systemd's specifier character escaped; a newline cannot be written in a unit."""
    if "\n" in value or "\r" in value:
        raise UnitError(f"{value!r} holds a line break, which a systemd unit cannot hold")
    return value.replace("%", "%%")


def _quote(value: str, *, exec_line: bool = False) -> str:
    """A double-quoted systemd word (C-style escapes); ``$`` doubled on an ``Exec`` line."""
    quoted = _escape(value).replace("\\", "\\\\").replace('"', '\\"')
    return f'"{quoted.replace("$", "$$") if exec_line else quoted}"'
