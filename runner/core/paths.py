"""Where tuneq keeps its state: ``$TUNEQ_HOME``, else ``$XDG_STATE_HOME/tuneq``, else ``~/.local/state/tuneq``."""

from __future__ import annotations

import os
from pathlib import Path


class StateDirError(Exception):
    """A directory tuneq keeps its state in cannot be used (one line naming it, for the user)."""


def ensure_dir(path: Path, what: str) -> Path:
    """Create the directory ``path`` if it is missing; :class:`StateDirError` if it cannot be one."""
    try:
        path.mkdir(parents=True, exist_ok=True)
    except FileExistsError:
        raise StateDirError(
            f"{what} {path} is a file, not a directory: move it aside, or set TUNEQ_HOME to a directory"
        ) from None
    except OSError as exc:
        raise StateDirError(
            f"{what} {path} cannot be created: {exc.strerror}; set TUNEQ_HOME to a writable directory"
        ) from None
    return path


def state_dir() -> Path:
    """The state directory (database, worker logs, runs, built-in models); created on first use."""
    if home := os.environ.get("TUNEQ_HOME"):
        root = Path(home)
    elif xdg := os.environ.get("XDG_STATE_HOME"):
        root = Path(xdg) / "tuneq"
    else:
        root = Path.home() / ".local" / "state" / "tuneq"
    return ensure_dir(root, "the state directory")


def cache_dir() -> Path:
    """Rebuildable data: ``$TUNEQ_CACHE``, else ``$XDG_CACHE_HOME/tuneq``, else ``~/.cache/tuneq``."""
    if override := os.environ.get("TUNEQ_CACHE"):
        return Path(override)
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "tuneq"


def models_dir() -> Path:
    """Cache of built-in test models (``tuneq:tiny-llama``), shared by every state directory."""
    return cache_dir() / "models"
