"""Where tuneq keeps its state: ``$TUNEQ_HOME``, else ``$XDG_STATE_HOME/tuneq``, else ``~/.local/state/tuneq``."""

from __future__ import annotations

import os
from pathlib import Path


def state_dir() -> Path:
    """The state directory (database, worker logs, runs, built-in models); created on first use."""
    if home := os.environ.get("TUNEQ_HOME"):
        root = Path(home)
    elif xdg := os.environ.get("XDG_STATE_HOME"):
        root = Path(xdg) / "tuneq"
    else:
        root = Path.home() / ".local" / "state" / "tuneq"
    root.mkdir(parents=True, exist_ok=True)
    return root


def cache_dir() -> Path:
    """Rebuildable data: ``$TUNEQ_CACHE``, else ``$XDG_CACHE_HOME/tuneq``, else ``~/.cache/tuneq``."""
    if override := os.environ.get("TUNEQ_CACHE"):
        return Path(override)
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "tuneq"


def models_dir() -> Path:
    """Cache of built-in test models (``tuneq:tiny-llama``), shared by every state directory."""
    return cache_dir() / "models"
