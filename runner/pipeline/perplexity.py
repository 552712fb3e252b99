"""Perplexity of a GGUF over answer tokens, from the model's own logits in llama-cpp-python.

Every file is scored on the same token ids (the data stage's held-out rows), and only on the tokens
that carry a label (the completions); the prompt is context. ``ppl = exp(mean negative log-likelihood)``.
Also on fixed passages of general text in English and Chinese (``general_text/``), which no job trains on.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from runner.dataset.templates import IGNORE


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


CHUNK = 512  # tokens per llama_decode call (llama.cpp's default batch)
GENERAL_TEXT = Path(__file__).with_name("general_text")


def perplexity_on_cpu(gguf: Path, sets: dict[str, list[Row]]) -> dict[str, Perplexity]:
    """``perplexities`` with CUDA hidden from llama.cpp (call in a fresh process, before llama_cpp loads).

    With no layers offloaded a CUDA build still runs large matrix products on the GPU; hiding the devices
    makes it a CPU build.
    """
    os.environ["CUDA_VISIBLE_DEVICES"] = ""
    return perplexities(gguf, sets, gpu_layers=0)


def perplexity(gguf: Path, rows: list[Row], gpu_layers: int = -1) -> Perplexity:
    """Score ``rows`` with the GGUF at ``gguf``; raises ValueError when no row has a labelled token."""
    return perplexities(gguf, {"rows": rows}, gpu_layers)["rows"]


def perplexities(gguf: Path, sets: dict[str, list[Row]], gpu_layers: int = -1) -> dict[str, Perplexity]:
    """Score each named set of rows with the GGUF at ``gguf``, loaded once.

    Uses llama.cpp's batch API the way its own perplexity tool does: each row is decoded in chunks of
    ``CHUNK`` tokens and logits are requested only at the positions that predict a labelled token, so the
    output buffer never holds more than one chunk's rows, whatever the row length and vocabulary.
    """
    import llama_cpp

    longest = max(len(r.input_ids) for rows in sets.values() for r in rows)
    llm = llama_cpp.Llama(
        model_path=str(gguf),
        n_ctx=max(CHUNK, (longest + 255) // 256 * 256),
        n_batch=CHUNK,
        n_ubatch=CHUNK,
        n_threads=os.cpu_count() or 1,
        n_gpu_layers=gpu_layers,
        seed=0,
        verbose=False,
    )
    batch = llama_cpp.llama_batch_init(CHUNK, 0, 1)
    try:
        return {name: _score(llm, batch, rows) for name, rows in sets.items()}
    finally:
        llama_cpp.llama_batch_free(batch)
        llm.close()


def _score(llm: Any, batch: Any, rows: list[Row]) -> Perplexity:
    import llama_cpp

    n_vocab = llm.n_vocab()
    total, count = 0.0, 0
    for row in rows:
        scored = {j - 1 for j in range(1, len(row.input_ids)) if row.labels[j] != IGNORE}
        if not scored:
            continue
        llama_cpp.llama_memory_clear(llama_cpp.llama_get_memory(llm.ctx), True)
        for start in range(0, len(row.input_ids), CHUNK):
            chunk = row.input_ids[start : start + CHUNK]
            batch.n_tokens = len(chunk)
            for i, token in enumerate(chunk):
                batch.token[i], batch.pos[i], batch.n_seq_id[i] = token, start + i, 1
                batch.seq_id[i][0] = 0
                batch.logits[i] = start + i in scored
            if (code := llama_cpp.llama_decode(llm.ctx, batch)) != 0:
                raise RuntimeError(f"llama_decode returned {code}")
            for i in range(len(chunk)):
                if start + i in scored:
                    out = llama_cpp.llama_get_logits_ith(llm.ctx, i)
                    logits = np.ctypeslib.as_array(out, shape=(n_vocab,)).astype(np.float64)
                    total += _logsumexp(logits) - float(logits[row.input_ids[start + i + 1]])
                    count += 1
    if count == 0:
        raise ValueError("no labelled token to score")
    return Perplexity(math.exp(total / count), count)


def general_text_rows(tokenizer: Any) -> dict[str, list[Row]]:
    """The passages shipped in ``general_text/`` (one per language), every token after the first scored.

    Text no job trains on: a quant's perplexity there shows what quantization did to the model itself,
    where held-out answers of a repetitive fine-tune sit near 1 whatever the file.
    """
    from runner.dataset.templates import adds_bos

    sets = {}
    for path in sorted(GENERAL_TEXT.glob("*.txt")):
        ids = list(tokenizer(path.read_text(encoding="utf-8").strip(), add_special_tokens=False)["input_ids"])
        if adds_bos(tokenizer):
            ids.insert(0, tokenizer.bos_token_id)
        sets[path.stem] = [Row(ids, [IGNORE, *ids[1:]])]
    return sets


def _logsumexp(logits: np.ndarray) -> float:
    top = float(logits.max())
    return top + math.log(float(np.exp(logits - top).sum()))
