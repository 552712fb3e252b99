"""Secrets come from the environment only, and are scrubbed from anything tuneq writes.

:func:`redact` is the one scrubbing function: events (nested fields too), ``report.json``, the log copies
of both backends and validation messages all pass through it. :func:`looks_secret` is what job files are
checked against.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterable
from pathlib import Path
from typing import Any

SECRET_ENV_VARS = ("HF_TOKEN", "HUGGING_FACE_HUB_TOKEN", "WANDB_API_KEY")
MIN_SECRET_LEN = 8  # shorter values are not scrubbed (they would blank out ordinary words)
_TOKEN_SHAPES = re.compile(r"\b(hf_[A-Za-z0-9]{20,}|wandb_[A-Za-z0-9]{20,})\b")
_HEX40 = re.compile(r"\b[0-9a-f]{40}\b")  # a bare W&B API key; also a git commit id (a revision pin)


def secret_values() -> list[str]:
    """The values of secret environment variables that are set (long enough to be real)."""
    return [v for name in SECRET_ENV_VARS if len(v := os.environ.get(name, "")) >= MIN_SECRET_LEN]


def load_secret_files() -> None:
    """Set each unset secret from the file ``<NAME>_FILE`` names (how the docker backend passes them)."""
    for name in SECRET_ENV_VARS:
        if (path := os.environ.get(f"{name}_FILE")) and not os.environ.get(name):
            os.environ[name] = Path(path).read_text(encoding="utf-8").strip()


def redact(text: str, extra: Iterable[str] = ()) -> str:
    """Replace secret values (the environment's and ``extra``) and token-shaped strings with ``***``."""
    for value in [*secret_values(), *extra]:
        if len(value) >= MIN_SECRET_LEN:
            text = text.replace(value, "***")
    return _TOKEN_SHAPES.sub("***", text)


def redact_data(value: Any) -> Any:
    """``value`` made JSON-ready with :func:`redact` applied to every string in it, nested ones and keys
    too (other objects, such as paths, become their redacted ``str``)."""
    if isinstance(value, dict):
        return {redact_data(k): redact_data(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [redact_data(v) for v in value]
    if value is None or isinstance(value, bool | int | float):
        return value
    return redact(str(value))


def looks_secret(text: str, *, commit_ok: bool = False) -> bool:
    """Whether ``text`` holds a secret's value or shape; 40 hex digits count unless ``commit_ok`` (a git
    commit pin such as ``model.revision``)."""
    return redact(text) != text or (not commit_ok and bool(_HEX40.search(text)))
