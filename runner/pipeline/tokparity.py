"""Tokenizer parity: the converted GGUF must tokenize the job's own text as the model's HF tokenizer does.

llama.cpp's converter reads the tokenizer files its own way; when it misreads them (a byte-level BPE
taken for a sentencepiece vocabulary, a wrong EOS) the GGUF answers forever or aborts at its first
tokenize, long after training. So the gguf stage compares, before anything loads the GGUF for real:

- the vocabulary's kind: a byte-level BPE (``tokenizer.json``: BPE with a ``ByteLevel`` pre-tokenizer)
  must become llama.cpp's ``gpt2`` model with the same number of merges, a byte-fallback BPE must not;
- in a child process (llama.cpp may abort on a broken vocabulary), with only the vocabulary loaded: the
  ids of the job's held-out rows (prompt and answer, as trained) and of each smoke prompt, and the BOS,
  EOS and end-of-turn ids, and whether a BOS is added.

A difference fails the stage with what differs.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from runner.core.rundir import RunDir
from runner.pipeline.context import StageFailed
from runner.pipeline.isolate import ChildCrashed, call_in_child

MAX_TEXTS = 24
_HINT = (
    "llama.cpp's converter read the tokenizer files differently from transformers: check tokenizer.json's "
    "model, pre_tokenizer and decoder, and tokenizer_config.json's tokenizer_class and eos_token"
)


@dataclass(frozen=True)
class GgufVocab:
    """What a GGUF's metadata says about its tokenizer."""

    model: str
    pre: str
    merges: int

    def describe(self) -> str:
        """One phrase for messages."""
        return f"model {self.model}, pre-tokenizer {self.pre}, {self.merges} merges"


def read_gguf_vocab(path: Path) -> GgufVocab:
    """The tokenizer model, pre-tokenizer and merge count from a GGUF's metadata (no llama.cpp)."""
    from gguf import GGUFReader

    fields = GGUFReader(str(path)).fields

    def text(name: str) -> str:
        field = fields.get(name)
        return bytes(field.parts[field.data[0]]).decode() if field is not None else "none"

    merges = fields.get("tokenizer.ggml.merges")
    return GgufVocab(
        text("tokenizer.ggml.model"), text("tokenizer.ggml.pre"), len(merges.data) if merges else 0
    )


def hf_vocab_kind(model_dir: Path) -> tuple[str | None, int]:
    """``("gpt2", merges)`` for a byte-level BPE, ``("not gpt2", merges)`` for a byte-fallback BPE, else None."""
    try:
        data = json.loads((model_dir / "tokenizer.json").read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError):
        return None, 0
    model = data.get("model") or {}
    if model.get("type") != "BPE":
        return None, 0
    merges = len(model.get("merges") or [])
    if "ByteLevel" in json.dumps(data.get("pre_tokenizer")):  # every byte has a token: byte_fallback is moot
        return "gpt2", merges
    if model.get("byte_fallback"):
        return "not gpt2", merges
    return None, merges


def gguf_tokenize(path: str, texts: list[str]) -> dict[str, Any]:
    """(In a child process.) llama.cpp's ids for ``texts`` (special tokens parsed, no BOS) and its special ids."""
    import llama_cpp

    llm = llama_cpp.Llama(model_path=path, vocab_only=True, verbose=False)
    try:
        vocab = llama_cpp.llama_model_get_vocab(llm.model)
        return {
            "ids": [llm.tokenize(t.encode("utf-8"), add_bos=False, special=True) for t in texts],
            "bos": llama_cpp.llama_vocab_bos(vocab),
            "eos": llama_cpp.llama_vocab_eos(vocab),
            "eot": llama_cpp.llama_vocab_eot(vocab),
            "add_bos": bool(llama_cpp.llama_vocab_get_add_bos(vocab)),
        }
    finally:
        llm.close()


def check_parity(
    gguf: Path, model_dir: Path, texts: list[str], trust_remote_code: bool = False
) -> dict[str, Any]:
    """Compare the GGUF's tokenizer with ``model_dir``'s on ``texts``; raise StageFailed naming differences."""
    from transformers import AutoTokenizer

    from runner.dataset.templates import END_OF_TURN, adds_bos

    vocab = read_gguf_vocab(gguf)
    tokenizer: Any = AutoTokenizer.from_pretrained(str(model_dir), trust_remote_code=trust_remote_code)
    kind, merges = hf_vocab_kind(model_dir)
    hf_side = f"{type(tokenizer).__name__}, eos {tokenizer.eos_token_id}"
    facts = f"GGUF: {vocab.describe()}; HF tokenizer: {hf_side}"
    differs = []
    if kind == "gpt2" and vocab.model != "gpt2":
        differs.append(f"model type {vocab.model}, expected gpt2 (tokenizer.json is a byte-level BPE)")
    if kind == "not gpt2" and vocab.model == "gpt2":
        differs.append("model type gpt2, but tokenizer.json is a byte-fallback (sentencepiece-style) BPE")
    if vocab.model == "gpt2" and kind == "gpt2" and vocab.merges != merges:
        differs.append(f"{vocab.merges} merges, tokenizer.json has {merges}")
    if differs:
        raise StageFailed(
            f"the GGUF's tokenizer differs from the model's: {'; '.join(differs)} ({facts})", _HINT
        )
    try:
        got = call_in_child("tokenizing with the GGUF's vocabulary", gguf_tokenize, str(gguf), texts)
    except ChildCrashed as exc:
        raise StageFailed(f"{exc.cause} ({facts})", _HINT) from None
    ends = {tokenizer.eos_token_id} | {
        tokenizer.convert_tokens_to_ids(t) for t in END_OF_TURN if t in tokenizer.get_vocab()
    }
    if got["eos"] != tokenizer.eos_token_id:
        differs.append(f"EOS id {got['eos']}, the HF tokenizer's is {tokenizer.eos_token_id}")
    if got["eot"] != -1 and got["eot"] not in ends:
        differs.append(f"end-of-turn id {got['eot']} is neither the HF EOS nor an end-of-turn token")
    hf_adds_bos = adds_bos(tokenizer)
    if got["add_bos"] != hf_adds_bos:
        differs.append(
            f"llama.cpp {'adds' if got['add_bos'] else 'does not add'} a BOS, transformers "
            f"{'does' if hf_adds_bos else 'does not'}"
        )
    if hf_adds_bos and got["bos"] != tokenizer.bos_token_id:
        differs.append(f"BOS id {got['bos']}, the HF tokenizer's is {tokenizer.bos_token_id}")
    for i, (text, ids) in enumerate(zip(texts, got["ids"], strict=True)):
        expected = list(tokenizer(text, add_special_tokens=False)["input_ids"])
        if ids != expected:
            at = next(
                (j for j, (a, b) in enumerate(zip(ids, expected, strict=False)) if a != b),
                min(len(ids), len(expected)),
            )
            differs.append(
                f"text {i + 1} ({text[:40]!r}...) differs from token {at}: GGUF {ids[at : at + 5]} vs HF "
                f"{expected[at : at + 5]} ({len(ids)} vs {len(expected)} tokens)"
            )
            break
    if differs:
        raise StageFailed(
            f"the GGUF's tokenizer differs from the model's: {'; '.join(differs)} ({facts})", _HINT
        )
    return {
        "texts": len(texts),
        "tokens": sum(len(ids) for ids in got["ids"]),
        "gguf": vocab.describe(),
        "bos": got["bos"],
        "eos": got["eos"],
        "eot": got["eot"],
    }


def job_texts(run: RunDir, model_dir: Path, prompts: list[str], trust_remote_code: bool = False) -> list[str]:
    """The text to compare: the first held-out rows (else training rows) as trained, and the smoke prompts."""
    from datasets import load_from_disk
    from transformers import AutoTokenizer

    tokenizer: Any = AutoTokenizer.from_pretrained(str(model_dir), trust_remote_code=trust_remote_code)
    split = run.data_eval if run.data_eval.exists() else run.data_train
    rows = load_from_disk(str(split))
    texts = [as_text(tokenizer, r["input_ids"]) for r in rows.select(range(min(MAX_TEXTS, len(rows))))]
    return texts + prompts


def as_text(tokenizer: Any, ids: list[int]) -> str:
    """The text of ``ids`` with added and special tokens written as themselves (so both sides parse them).

    ``decode`` alone can rewrite them (a sentencepiece decoder turns ``▁`` into a space inside
    ``<｜begin▁of▁sentence｜>``), and the rows would then test plain text only.
    """
    added = set(tokenizer.added_tokens_decoder)
    parts: list[str] = []
    run: list[int] = []
    for token in ids:
        if token in added:
            parts += [tokenizer.decode(run), tokenizer.convert_ids_to_tokens(token)]
            run = []
        else:
            run.append(token)
    return "".join([*parts, tokenizer.decode(run)])
