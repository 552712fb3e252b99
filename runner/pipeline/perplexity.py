"""Perplexity of a GGUF over answer tokens, from the model's own logits in llama-cpp-python.

Every file is scored on the same token ids (the data stage's held-out rows), and only on the tokens
that carry a label (the completions); the prompt is context. ``ppl = exp(mean negative log-likelihood)``.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from runner.templates import IGNORE


@dataclass(frozen=True)
class Row:
    """One scored sequence: token ids and labels (``IGNORE`` marks context tokens)."""

    input_ids: list[int]
    labels: list[int]


@dataclass(frozen=True)
class Perplexity:
    """A file's perplexity and how many tokens it was measured on."""

    ppl: float
    tokens: int


def load_rows(split_dir: Path, limit: int) -> list[Row]:
    """The first ``limit`` rows of a tokenized split saved by the data stage."""
    from datasets import load_from_disk

    data = load_from_disk(str(split_dir))
    return [Row(list(r["input_ids"]), list(r["labels"])) for r in data.select(range(min(limit, len(data))))]


def perplexity(gguf: Path, rows: list[Row], gpu_layers: int = -1) -> Perplexity:
    """Score ``rows`` with the GGUF at ``gguf``; raises ValueError when no row has a labelled token."""
    from llama_cpp import Llama

    # A context of whole 256-token blocks, one batch for a whole row: a tiny context (the longest row)
    # crashed llama.cpp's CUDA backend on an H100, while the smoke test's large one ran.
    longest = max(len(r.input_ids) for r in rows)
    n_ctx = max(512, (longest + 255) // 256 * 256)
    llm = Llama(
        model_path=str(gguf),
        n_ctx=n_ctx,
        n_batch=n_ctx,
        n_ubatch=n_ctx,
        logits_all=True,
        n_threads=os.cpu_count() or 1,
        n_gpu_layers=gpu_layers,
        seed=0,
        verbose=False,
    )
    total, count = 0.0, 0
    try:
        for row in rows:
            positions = [j for j in range(1, len(row.input_ids)) if row.labels[j] != IGNORE]
            if not positions:
                continue
            llm.reset()
            llm.eval(row.input_ids)
            logits = np.asarray(llm.scores[[j - 1 for j in positions]], dtype=np.float64)
            targets = np.asarray([row.input_ids[j] for j in positions])
            total += float(np.sum(_logsumexp(logits) - logits[np.arange(len(positions)), targets]))
            count += len(positions)
    finally:
        llm.close()
    if count == 0:
        raise ValueError("no labelled token to score")
    return Perplexity(math.exp(total / count), count)


def _logsumexp(logits: np.ndarray) -> np.ndarray:
    top = logits.max(axis=1)
    result: np.ndarray = top + np.log(np.exp(logits - top[:, None]).sum(axis=1))
    return result
