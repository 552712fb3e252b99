"""``tuneq:tiny-llama``: a Llama-architecture model small enough to train on two CPU cores.

A sentencepiece tokenizer trained on a built-in corpus, with the DeepSeek-R1 special tokens
(``<｜User｜>``, ``<｜Assistant｜>``, ``<think>``) so reasoning jobs behave as they do on an R1 distill, and
weights pre-trained on that corpus. Every matrix row is a multiple of 256, as Q4_K_M needs.

The weights ship with tuneq (``runner/models/tiny_llama/``, pinned by :data:`MANIFEST_SHA256`): they
were built once with ``python -m runner.models.tiny_build`` (runner/models/tiny_build.py) and every machine starts from the same bits.
Pre-training on the user's own CPU gave different weights on every vector instruction set and thread
count, and so a different demo result (a 4-bit answer that flipped on an AVX2-only machine).
"""

from __future__ import annotations

import hashlib
import shutil
from pathlib import Path

from runner.core.atomic import building
from runner.core.rundir import SUMS

TINY_LLAMA = "tuneq:tiny-llama"
TINY_VERSION = "v6"
BOS = "<｜begin▁of▁sentence｜>"
EOS = "<｜end▁of▁sentence｜>"
PAD = "<｜▁pad▁｜>"
SPECIAL = ["<｜User｜>", "<｜Assistant｜>", "<think>", "</think>"]
PACKAGED = Path(__file__).with_name("tiny_llama")
# SHA-256 of PACKAGED/SHA256SUMS, which lists every shipped file's SHA-256 (printed by the build).
MANIFEST_SHA256 = "2efa6ed87de7049e5811424bc2cd073f767912ed5f609a494ef3fceec6298290"


def builtin_note(base: str) -> str | None:
    """A line for a model card built on ``base`` where the base needs explaining (the demo's tiny model)."""
    if base != TINY_LLAMA:
        return None
    return (
        f"Note: `{TINY_LLAMA}` is tuneq's demo model (2 layers, a 1,024-token vocabulary, pre-trained on 23 kB "
        "of built-in text), so its answers only echo the trained format and its perplexity on general "
        "text is around a million: that is a model that knows no language, not a broken export (a real "
        "base model, as in jobs/smollm2-capitals-json.toml, scores below 100)."
    )


class TinyModelDamaged(Exception):
    """The shipped tiny model's files do not match their pinned checksums."""


def tiny_llama_dir(cache: Path) -> Path:
    """The shipped tiny model, copied into the model cache; every file's checksum is verified each call."""
    expected = _shipped_manifest()
    dest = cache / f"tiny-llama-{TINY_VERSION}"
    if _checksums(dest, expected) != expected:
        if _checksums(PACKAGED, expected) != expected:
            raise TinyModelDamaged(f"{PACKAGED} does not match its checksums: reinstall tuneq")
        with building(dest) as work:
            for name in expected:
                shutil.copyfile(PACKAGED / name, work / name)
    return dest


def _shipped_manifest() -> dict[str, str]:
    """File name → SHA-256 from the shipped SHA256SUMS, itself checked against :data:`MANIFEST_SHA256`."""
    try:
        text = (PACKAGED / SUMS).read_bytes()
    except OSError as exc:
        raise TinyModelDamaged(f"{PACKAGED}/{SUMS} is missing ({exc}): reinstall tuneq") from None
    if hashlib.sha256(text).hexdigest() != MANIFEST_SHA256:
        raise TinyModelDamaged(f"{PACKAGED}/{SUMS} does not match the pinned checksum: reinstall tuneq")
    return {name: digest for digest, name in (line.split(maxsplit=1) for line in text.decode().splitlines())}


def _checksums(folder: Path, expected: dict[str, str]) -> dict[str, str]:
    """SHA-256 of each expected file present in ``folder``."""
    return {
        name: hashlib.sha256((folder / name).read_bytes()).hexdigest()
        for name in expected
        if (folder / name).is_file()
    }
