"""``tuneq:tiny-llama``: a Llama-architecture model small enough to train on two CPU cores.

Random weights from a config and a sentencepiece tokenizer trained on a built-in corpus, with the
DeepSeek-R1 special tokens (``<｜User｜>``, ``<｜Assistant｜>``, ``<think>``) so reasoning jobs behave as
they do on an R1 distill. Every matrix row is a multiple of 256, as Q4_K_M needs. Built once, cached.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any

from runner.templates import r1_inference_template

TINY_LLAMA = "tuneq:tiny-llama"
_VERSION = "v5"
BOS = "<｜begin▁of▁sentence｜>"
EOS = "<｜end▁of▁sentence｜>"
PAD = "<｜▁pad▁｜>"
SPECIAL = ["<｜User｜>", "<｜Assistant｜>", "<think>", "</think>"]
_CORPUS = Path(__file__).with_name("tiny_corpus.txt")


def build_tiny_llama(dest: Path, seed: int = 0) -> Path:
    """Build the tiny model into ``dest`` (written to a temporary directory, then renamed)."""
    import sentencepiece as spm
    import tokenizers
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM, LlamaTokenizer
    from transformers.convert_slow_tokenizer import SentencePieceExtractor

    dest.parent.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix=".tiny-", dir=dest.parent))
    try:
        prefix = work / "tokenizer"
        spm.SentencePieceTrainer.train(
            input=str(_CORPUS),
            model_prefix=str(prefix),
            vocab_size=1024,
            model_type="bpe",
            byte_fallback=True,
            character_coverage=1.0,
            split_digits=True,
            unk_id=0,
            bos_id=1,
            eos_id=2,
            pad_id=3,
            unk_piece="<unk>",
            bos_piece=BOS,
            eos_piece=EOS,
            pad_piece=PAD,
            user_defined_symbols=SPECIAL,
            num_threads=2,
            minloglevel=2,
        )
        extracted: dict[str, Any] = SentencePieceExtractor(str(prefix) + ".model").extract(  # type: ignore[assignment]
            tokenizers.models.BPE
        )
        tokenizer = LlamaTokenizer(
            vocab=extracted["vocab"],
            merges=extracted["merges"],
            bos_token=BOS,
            eos_token=EOS,
            pad_token=PAD,
            unk_token="<unk>",
            add_bos_token=True,
            add_eos_token=False,
            add_prefix_space=False,  # as llama.cpp tokenizes it
        )
        # As in the real R1 distills: role and think markers are added tokens, but not "special" ones,
        # so llama.cpp prints </think> in answers instead of hiding it as a control token.
        tokenizer.add_tokens([tokenizers.AddedToken(t, special=False, normalized=False) for t in SPECIAL])
        tokenizer.chat_template = r1_inference_template()
        torch.manual_seed(seed)
        config = LlamaConfig(
            vocab_size=len(tokenizer),
            hidden_size=256,
            intermediate_size=768,
            num_hidden_layers=2,
            num_attention_heads=4,
            num_key_value_heads=4,
            max_position_embeddings=2048,
            bos_token_id=tokenizer.bos_token_id,
            eos_token_id=tokenizer.eos_token_id,
            pad_token_id=tokenizer.pad_token_id,
            tie_word_embeddings=False,
            dtype="float32",
        )
        model = LlamaForCausalLM(config)
        _pretrain(model, tokenizer)
        model.save_pretrained(work / "model")
        tokenizer.save_pretrained(work / "model")
        shutil.copy(str(prefix) + ".model", work / "model" / "tokenizer.model")
        added = {t: tokenizer.convert_tokens_to_ids(t) for t in SPECIAL}  # read by llama.cpp's converter
        (work / "model" / "added_tokens.json").write_text(json.dumps(added, ensure_ascii=False))
        (work / "model" / "tuneq-tiny.json").write_text(json.dumps({"name": TINY_LLAMA, "version": _VERSION}))
        if dest.exists():
            shutil.rmtree(dest)
        os.replace(work / "model", dest)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return dest


def _pretrain(model: Any, tokenizer: Any, steps: int = 300, block: int = 128) -> None:
    """A few hundred steps of plain language modelling on the corpus, so the base knows its words.

    LoRA then has a base to adapt, as with a real model, and a before/after comparison means something.
    """
    import torch

    text = "\n".join(line for line in _CORPUS.read_text().splitlines() if not line.startswith("#"))
    ids = torch.tensor(tokenizer(text, add_special_tokens=False)["input_ids"])
    blocks = ids[: len(ids) // block * block].view(-1, block)
    generator = torch.Generator().manual_seed(0)
    optimizer = torch.optim.AdamW(model.parameters(), lr=3e-3, weight_decay=0.0)
    model.train()
    for _ in range(steps):
        batch = blocks[torch.randint(len(blocks), (8,), generator=generator)]
        loss = model(input_ids=batch, labels=batch).loss
        loss.backward()
        optimizer.step()
        optimizer.zero_grad()
    model.eval()


def tiny_llama_dir(cache: Path) -> Path:
    """The cached tiny model, built on first use."""
    dest = cache / f"tiny-llama-{_VERSION}"
    if not (dest / "tuneq-tiny.json").exists():
        build_tiny_llama(dest)
    return dest
