"""Secrets come from the environment only, and are scrubbed from anything tuneq writes."""

from __future__ import annotations

import os
import re
from pathlib import Path

SECRET_ENV_VARS = ("HF_TOKEN", "HUGGING_FACE_HUB_TOKEN", "WANDB_API_KEY")
_TOKEN_SHAPES = re.compile(r"\b(hf_[A-Za-z0-9]{20,}|wandb_[A-Za-z0-9]{20,})\b")


def secret_values() -> list[str]:
    """The values of secret environment variables that are set (long enough to be real)."""
    return [v for name in SECRET_ENV_VARS if len(v := os.environ.get(name, "")) >= 8]


def load_secret_files() -> None:
    """Set each unset secret from the file ``<NAME>_FILE`` names (how the docker backend passes them)."""
    for name in SECRET_ENV_VARS:
        if (path := os.environ.get(f"{name}_FILE")) and not os.environ.get(name):
            os.environ[name] = Path(path).read_text(encoding="utf-8").strip()


def redact(text: str) -> str:
    """Replace secret values and token-shaped strings with ``***``."""
    for value in secret_values():
        text = text.replace(value, "***")
    return _TOKEN_SHAPES.sub("***", text)
