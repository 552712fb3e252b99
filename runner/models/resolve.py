"""Turn ``model.base`` into something loaders accept: a local directory or a hub id."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from runner.core.paths import models_dir
from runner.models.random import SHAPES, random_model_dir
from runner.models.smollm2 import SMOLLM2, WheelMissing, smollm2_dir
from runner.models.tiny import TINY_LLAMA, tiny_llama_dir

BUILTINS = (TINY_LLAMA, SMOLLM2, *SHAPES)


class ModelNotFound(Exception):
    """``model.base`` names nothing that can be loaded."""


def is_builtin(base: str) -> bool:
    """Whether ``base`` names a model tuneq builds itself."""
    return base.startswith("tuneq:")


def resolve_base(base: str) -> str:
    """A local directory for built-in and local models, else the hub id unchanged."""
    if is_builtin(base):
        if base == TINY_LLAMA:
            return str(tiny_llama_dir(models_dir()))
        if base in SHAPES:
            return str(random_model_dir(base, models_dir()))
        if base == SMOLLM2:
            try:
                return str(smollm2_dir(models_dir()))
            except WheelMissing as exc:
                raise ModelNotFound(str(exc)) from None
        raise ModelNotFound(f"unknown built-in model '{base}'; built-ins: {', '.join(BUILTINS)}")
    path = Path(base).expanduser()
    if path.exists():
        return str(path.resolve())
    return base


def local_model_dir(base: str, revision: str | None = None) -> Path | None:
    """The directory holding the base model's files: local path, built-in, or the HF cache's snapshot."""
    resolved = resolve_base(base)
    if Path(resolved).is_dir():
        return Path(resolved)
    from huggingface_hub import snapshot_download

    try:
        return Path(snapshot_download(resolved, revision=revision, local_files_only=True))
    except Exception:  # not cached: the hub client raises several types
        return None


def load_tokenizer(base: str, revision: str | None = None, trust_remote_code: bool = False) -> Any:
    """The base model's tokenizer (from the HF cache or the hub for hub ids)."""
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(
        resolve_base(base), revision=revision, trust_remote_code=trust_remote_code
    )
