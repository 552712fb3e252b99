"""Secrets come from the environment only, and are scrubbed from anything tuneq writes.

:func:`redact` is the one scrubbing function. Everything tuneq writes or prints passes through it: events
(every field) through :class:`runner.core.events.EventWriter`; every other file a run writes
(``smoke.json``, ``fidelity.json``, ``eval.md``, ``report.json``, ``ship/``'s model card, Modelfile and
commands, ``data/sample.txt``, stage markers) through :func:`write_redacted`; the log copies of both
backends line by line; the rows of a job's data set as they are read; and whatever the ``tuneq`` command and
the worker print, through :func:`redacted_output`. :func:`looks_secret` is what job files are checked
against.
"""

from __future__ import annotations

import json
import os
import re
import sys
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, TextIO

from runner.core.atomic import write_atomic

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


def write_redacted(path: Path, text: str) -> None:
    """Write ``text`` with :func:`redact` applied, whole or not at all (:func:`write_atomic`): a reader (or a
    full disk) never sees half a file."""
    write_atomic(path, redact(text))


def write_redacted_json(path: Path, data: Any) -> None:
    """:func:`write_redacted` of ``data`` as indented JSON, every string in it redacted (:func:`redact_data`)."""
    write_redacted(path, json.dumps(redact_data(data), indent=2, ensure_ascii=False))


class _RedactingStream:
    """A text stream that writes through :func:`redact` (everything else is the wrapped stream's)."""

    def __init__(self, stream: TextIO) -> None:
        self._stream = stream

    def write(self, text: str) -> int:
        self._stream.write(redact(text))
        return len(text)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._stream, name)


@contextmanager
def redacted_output() -> Iterator[None]:
    """While it lasts, what is printed to ``sys.stdout`` and ``sys.stderr`` passes through :func:`redact`."""
    saved = sys.stdout, sys.stderr
    sys.stdout, sys.stderr = _RedactingStream(saved[0]), _RedactingStream(saved[1])
    try:
        yield
    finally:
        sys.stdout, sys.stderr = saved


def looks_secret(text: str, *, commit_ok: bool = False) -> bool:
    """Whether ``text`` holds a secret's value or shape; 40 hex digits count unless ``commit_ok`` (a git
    commit pin such as ``model.revision``)."""
    return redact(text) != text or (not commit_ok and bool(_HEX40.search(text)))
