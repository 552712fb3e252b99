"""Will the worker survive logout? On systemd machines a login session's processes may be killed when
the user logs out unless lingering is enabled for the user (``loginctl enable-linger``)."""

from __future__ import annotations

import getpass
from pathlib import Path

LINGER_DIR = Path("/var/lib/systemd/linger")


def linger_warning(
    *,
    user: str | None = None,
    cgroup: Path = Path("/proc/self/cgroup"),
    systemd: Path = Path("/run/systemd/system"),
    linger_dir: Path = LINGER_DIR,
) -> str | None:
    """A warning if this process runs in a systemd login session of a user without lingering."""
    if not systemd.is_dir():
        return None
    try:
        in_session = "/session-" in cgroup.read_text()
    except OSError:
        return None
    user = user or getpass.getuser()
    if not in_session or lingering(user, linger_dir):
        return None
    return (
        f"this is a systemd login session and lingering is off for {user}: the worker may be killed "
        f"when you log out. Run `loginctl enable-linger {user}` once (with it, `tuneq daemon install` "
        "also starts the worker at boot)."
    )


def lingering(user: str | None = None, linger_dir: Path = LINGER_DIR) -> bool:
    """Whether systemd keeps ``user``'s manager running without a login (``loginctl enable-linger``)."""
    return (linger_dir / (user or getpass.getuser())).exists()
