"""Random-weight models in the shapes users train, with a real tokenizer family, for hub-less machines.

``tuneq:random-r1-qwen-1.5b`` has DeepSeek-R1-Distill-Qwen-1.5B's shape, ``tuneq:random-llama-8b``
Llama-3-8B's (with the same tokenizer, so a larger vocabulary than Llama 3's), and
``tuneq:tiny-r1-qwen`` is a 2-layer model of hidden size 256 for CPU tests. Their tokenizer is the real
Qwen2 one, rebuilt from llama.cpp's vocab GGUF, plus the R1 distills' markers (``<｜User｜>``,
``<｜Assistant｜>``, ``<think>``) and BOS/EOS, so the llama.cpp converter recognises it as it does the
real R1-Distill-Qwen. The weights teach nothing: these models exist to measure speed and memory and to
exercise every stage on a GPU machine that cannot reach a model hub.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from runner.core.atomic import building
from runner.dataset.templates import r1_inference_template

R1_BOS, R1_EOS, R1_PAD = "<｜begin▁of▁sentence｜>", "<｜end▁of▁sentence｜>", "<｜▁pad▁｜>"
R1_MARKERS = ("<｜User｜>", "<｜Assistant｜>", "<think>", "</think>")
_VERSION = "v1"

VOCAB_SIZE = 152_064  # the R1-style tokenizer's 151,943 tokens, rounded up to a multiple of 128

SHAPES: dict[str, dict[str, Any]] = {
    "tuneq:random-r1-qwen-1.5b": {
        "arch": "qwen2",
        "hidden_size": 1536,
        "intermediate_size": 8960,
        "num_hidden_layers": 28,
        "num_attention_heads": 12,
        "num_key_value_heads": 2,
    },
    "tuneq:random-llama-8b": {
        "arch": "llama",
        "hidden_size": 4096,
        "intermediate_size": 14336,
        "num_hidden_layers": 32,
        "num_attention_heads": 32,
        "num_key_value_heads": 8,
    },
    "tuneq:tiny-r1-qwen": {
        "arch": "qwen2",
        "hidden_size": 256,
        "intermediate_size": 768,
        "num_hidden_layers": 2,
        "num_attention_heads": 4,
        "num_key_value_heads": 2,
    },
}


def build_r1_tokenizer(dest: Path) -> Path:
    """The Qwen2 tokenizer from llama.cpp's vocab GGUF, with R1's BOS/EOS, markers and chat template."""
    from tokenizers import AddedToken
    from transformers import AutoTokenizer

    from runner.llamacpp.converter import vocab_gguf

    vocab = vocab_gguf("qwen2")
    tokenizer = AutoTokenizer.from_pretrained(vocab.parent, gguf_file=vocab.name)
    tokenizer.add_special_tokens({"bos_token": R1_BOS, "eos_token": R1_EOS, "pad_token": R1_PAD})
    tokenizer.add_tokens([AddedToken(t, special=False, normalized=False) for t in R1_MARKERS])
    tokenizer.chat_template = r1_inference_template()
    tokenizer.save_pretrained(dest)
    return dest


def padded_vocab(tokens: int) -> int:
    """The embedding rows for a tokenizer of ``tokens`` tokens: rounded up to a multiple of 128."""
    return (tokens + 127) // 128 * 128


def r1_tokenizer_dir(cache: Path) -> Path:
    """The cached R1-style Qwen2 tokenizer (built on first use; needs llama.cpp's vocab files)."""
    dest = cache / f"r1-qwen-tokenizer-{_VERSION}"
    if not (dest / "tokenizer_config.json").exists():
        build_r1_tokenizer(dest)
    return dest


def build_random_model(name: str, dest: Path, tokenizer_dir: Path, seed: int = 0) -> Path:
    """Random-init ``name``'s shape in bf16 and save it with the tokenizer (temporary dir, then rename)."""
    import torch
    from transformers import AutoTokenizer, LlamaConfig, LlamaForCausalLM, Qwen2Config, Qwen2ForCausalLM

    shape = dict(SHAPES[name])
    arch = shape.pop("arch")
    tokenizer = AutoTokenizer.from_pretrained(tokenizer_dir)
    config_cls, model_cls = (
        (Qwen2Config, Qwen2ForCausalLM) if arch == "qwen2" else (LlamaConfig, LlamaForCausalLM)
    )
    config = config_cls(
        vocab_size=padded_vocab(len(tokenizer)),
        max_position_embeddings=32768,
        rms_norm_eps=1e-6,
        tie_word_embeddings=False,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
        dtype="bfloat16",
        **shape,
    )
    torch.manual_seed(seed)
    device = "cuda" if torch.cuda.is_available() else "cpu"
    with torch.device(device):
        model = model_cls(config).bfloat16()
    with building(dest) as work:
        model.save_pretrained(work)
        tokenizer.save_pretrained(work)
        (work / "tuneq-random.json").write_text(json.dumps({"name": name, "version": _VERSION}))
    return dest


def random_model_path(name: str, cache: Path) -> Path:
    """Where the random model ``name`` lives in ``cache`` (built or not)."""
    return cache / f"{name.removeprefix('tuneq:')}-{_VERSION}"


def random_model_dir(name: str, cache: Path) -> Path:
    """The cached random model ``name``, built on first use."""
    dest = random_model_path(name, cache)
    if not (dest / "tuneq-random.json").exists():
        build_random_model(name, dest, r1_tokenizer_dir(cache))
    return dest
