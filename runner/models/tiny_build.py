"""Maintainers only: build ``tuneq:tiny-llama`` (runner/models/tiny.py) and write what ships in
``runner/models/tiny_llama/``: ``python -m runner.models.tiny_build`` prints the new manifest digest to pin as
:data:`runner.models.tiny.MANIFEST_SHA256`. Never imported at run time."""

from __future__ import annotations

import hashlib
import json
import shutil
import tempfile
from pathlib import Path
from typing import Any

from runner.core.atomic import building
from runner.core.rundir import SUMS
from runner.dataset.templates import r1_inference_template
from runner.models.tiny import BOS, EOS, PACKAGED, PAD, SPECIAL, TINY_LLAMA, TINY_VERSION

_CORPUS = Path(__file__).with_name("tiny_corpus.txt")


def build_tiny_llama(dest: Path, seed: int = 0) -> Path:
    """Build the tiny model into ``dest`` (written to a temporary directory, then renamed).

    Maintainers only: the result is what ships in ``runner/models/tiny_llama/``.
    """
    import sentencepiece as spm
    import tokenizers
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM, LlamaTokenizer
    from transformers.convert_slow_tokenizer import SentencePieceExtractor

    with tempfile.TemporaryDirectory() as scratch, building(dest) as model_dir:
        work = Path(scratch)
        prefix = work / "tokenizer"
        corpus = work / "corpus.txt"
        chats = (f"{c[0]['content']}\n{c[1]['content']}" for c in _chats())
        corpus.write_text("\n".join([*_medical_lines(), *chats]))
        spm.SentencePieceTrainer.train(
            input=str(corpus),
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
        model.save_pretrained(model_dir)
        tokenizer.save_pretrained(model_dir)
        shutil.copy(str(prefix) + ".model", model_dir / "tokenizer.model")
        added = {t: tokenizer.convert_tokens_to_ids(t) for t in SPECIAL}  # read by llama.cpp's converter
        (model_dir / "added_tokens.json").write_text(json.dumps(added, ensure_ascii=False))
        (model_dir / "tuneq-tiny.json").write_text(json.dumps({"name": TINY_LLAMA, "version": TINY_VERSION}))
    return dest


def _medical_lines() -> list[str]:
    return [line for line in _CORPUS.read_text().splitlines() if line and not line.startswith("#")]


def _chats(count: int = 400, seed: int = 0) -> list[list[dict[str, str]]]:
    """Short R1-style conversations on arithmetic: the base learns the chat format, not the demo's topic.

    Real R1 distills already think in ``<think> … </think>`` and stop with EOS; a fine-tune teaches them
    a domain. The tiny base mirrors that, so the demo's ``</think>`` does not hinge on LoRA raising a
    token the base never saw.
    """
    import random

    rng = random.Random(seed)
    chats = []
    for _ in range(count):
        a, b = rng.randint(2, 99), rng.randint(2, 99)
        if rng.random() < 0.5:
            question = f"What is {a} plus {b}?"
            reasoning = f"We add {a} and {b}. {a} plus {b} is {a + b}."
            answer = f"The answer is {a + b}."
        else:
            big = max(a, b)
            question = f"Which number is larger, {a} or {b}?"
            reasoning = f"We compare {a} and {b}. The larger one is {big}."
            answer = f"The larger number is {big}."
        chats.append(
            [
                {"role": "user", "content": question},
                {"role": "assistant", "content": f"<think>\n{reasoning}\n</think>\n\n{answer}"},
            ]
        )
    return chats


def _pretrain(model: Any, tokenizer: Any, steps: int = 600, block: int = 128) -> None:
    """Language modelling on the medical corpus (lines shuffled) and on R1-format arithmetic chats.

    The base knows the demo's words and the chat format, but not the demo's task: which sentences go
    together, in which order, inside the think block. That is what the demo's fine-tune teaches.
    """
    import random

    import torch

    rng = random.Random(0)
    documents = [line + "\n" for line in _medical_lines()] + [
        tokenizer.apply_chat_template(chat, tokenize=False) for chat in _chats()
    ]
    rng.shuffle(documents)
    device = "cuda" if torch.cuda.is_available() else "cpu"  # a maintainer's GPU builds it in seconds
    model.to(device)
    ids = torch.tensor(tokenizer("".join(documents), add_special_tokens=False)["input_ids"])
    blocks = ids[: len(ids) // block * block].view(-1, block).to(device)
    generator = torch.Generator().manual_seed(0)
    optimizer = torch.optim.AdamW(model.parameters(), lr=3e-3, weight_decay=0.0)
    model.train()
    for _ in range(steps):
        batch = blocks[torch.randint(len(blocks), (8,), generator=generator)]
        loss = model(input_ids=batch, labels=batch).loss
        loss.backward()
        optimizer.step()
        optimizer.zero_grad()
    model.to("cpu").eval()


def _write_shipped(built: Path) -> str:
    """Replace ``PACKAGED`` with ``built``'s files and their SHA256SUMS; return the manifest's digest."""
    shutil.rmtree(PACKAGED, ignore_errors=True)
    PACKAGED.mkdir()
    names = sorted(p.name for p in built.iterdir() if p.is_file())
    for name in names:
        shutil.copyfile(built / name, PACKAGED / name)
    manifest = "".join(f"{hashlib.sha256((PACKAGED / n).read_bytes()).hexdigest()}  {n}\n" for n in names)
    (PACKAGED / SUMS).write_text(manifest)
    return hashlib.sha256(manifest.encode()).hexdigest()


if __name__ == "__main__":
    with tempfile.TemporaryDirectory() as tmp:
        digest = _write_shipped(build_tiny_llama(Path(tmp) / "model"))
    print(f"wrote {PACKAGED}; set MANIFEST_SHA256 = {digest!r}")
