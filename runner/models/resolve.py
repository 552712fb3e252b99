"""``model.base``: one rule for what it names, one locator for its files, and what loaders accept.

- The rule for what it names is :func:`runner.spec.load.base_location` (a relative path is taken from the
  job file's directory, like ``data.source``); specs loaded from a job file hold the absolute path, and
  submit stores it in ``job.json`` for the run.
- :func:`base_problem` says why a base cannot be trained (a missing path, a GGUF, a folder without
  ``config.json``, text that is no hub id), for ``tuneq validate``.
- :func:`base_files` is the locator: where the model's files are on disk now, without building or
  downloading (the shipped tiny model, a built-in already built, a local directory, the hub cache).
  Validate, the memory and disk estimates and the container backend all ask it.
- :func:`resolve_base` and :func:`local_model_dir` are for the pipeline: they build built-ins on first use.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from runner.core.paths import models_dir
from runner.dataset.read import is_hub_id
from runner.models.random import SHAPES, VOCAB_SIZE, random_model_dir, random_model_path
from runner.models.smollm2 import SMOLLM2, SMOLLM2_CONFIG, WheelMissing, smollm2_dir, smollm2_path
from runner.models.tiny import PACKAGED, TINY_LLAMA, tiny_llama_dir

BUILTINS = (TINY_LLAMA, SMOLLM2, *SHAPES)
GGUF_ADVICE = (
    "training needs the Hugging Face checkpoint (config.json, *.safetensors, tokenizer files) that GGUFs "
    "are made from: set model.base to its hub id or a local copy; with only the GGUF, de-quantize it first "
    "(docs/job-file.md, 'A GGUF as the base': its weights stay rounded 4-bit values)"
)
# The bases of the shipped jobs (jobs/), so that validate estimates memory and disk before the download;
# the same shapes as the random built-ins, with the real vocabularies (both have untied output heads).
_KNOWN_HUB_SHAPES = {
    "deepseek-ai/DeepSeek-R1-Distill-Qwen-1.5B": ("tuneq:random-r1-qwen-1.5b", 151_936),
    "unsloth/DeepSeek-R1-Distill-Llama-8B": ("tuneq:random-llama-8b", 128_256),
}


class ModelNotFound(Exception):
    """``model.base`` names nothing that can be loaded."""


def is_builtin(base: str) -> bool:
    """Whether ``base`` names a model tuneq builds itself."""
    return base.startswith("tuneq:")


def base_problem(base: str) -> str | None:
    """Why ``base`` (as :func:`runner.spec.load.base_location` resolved it) cannot be trained, with the fix; ``None`` when it may be."""
    if is_builtin(base):
        return (
            None
            if base in BUILTINS
            else f"unknown built-in model '{base}': built-ins are {', '.join(BUILTINS)}"
        )
    path = Path(base)
    if not path.is_absolute():
        if is_hub_id(base):
            return None
        return f"'{base}' is neither a model directory nor a hub id: name a local directory or 'owner/name'"
    if path.suffix.lower() == ".gguf" and not path.is_dir():
        return f"{path} is a GGUF file; {GGUF_ADVICE}"
    if not path.exists():
        return (
            f"{path} not found: a relative model.base is taken from the job file's directory; "
            "give the model's directory, or a hub id as 'owner/name'"
        )
    if not path.is_dir():
        return f"{path} is a file, not a model directory: give the directory that holds its config.json"
    if not (path / "config.json").is_file():
        if any(path.glob("*.gguf")):
            return f"{path} holds a GGUF but no config.json; {GGUF_ADVICE}"
        return (
            f"{path} has no config.json: give a Hugging Face model directory (config.json, *.safetensors, "
            "tokenizer files), as save_pretrained writes it"
        )
    return None


def base_files(base: str, revision: str | None = None, cache_dir: Path | None = None) -> Path | None:
    """The directory holding the base model's ``config.json`` now, or ``None``: nothing is built or
    downloaded (``cache_dir``: another hub cache than the default, as the container backend mounts)."""
    if base == TINY_LLAMA:
        return PACKAGED
    if base == SMOLLM2:
        found: Path | None = smollm2_path(models_dir())
    elif base in SHAPES:
        found = random_model_path(base, models_dir())
    elif Path(base).expanduser().is_absolute() or not is_hub_id(base):
        found = Path(base).expanduser()
    else:
        try:
            from huggingface_hub import try_to_load_from_cache
        except ImportError:  # the core install: no hub client, no hub cache to read
            return None
        cached = try_to_load_from_cache(base, "config.json", cache_dir=cache_dir, revision=revision)
        found = Path(cached).parent if isinstance(cached, str) else None
    return found if found is not None and (found / "config.json").is_file() else None


def known_config(base: str) -> dict[str, Any] | None:
    """The shape of a built-in, or of a shipped job's hub base, when its ``config.json`` is not on disk."""
    if base == SMOLLM2:
        return dict(SMOLLM2_CONFIG)
    name, vocab = _KNOWN_HUB_SHAPES.get(base, (base, VOCAB_SIZE))
    if name not in SHAPES:
        return None
    shape = {k: v for k, v in SHAPES[name].items() if k != "arch"}
    return {**shape, "vocab_size": vocab, "tie_word_embeddings": False}


def resolve_base(base: str) -> str:
    """A local directory for built-in and local models (built-ins are built on first use), else the hub id."""
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
