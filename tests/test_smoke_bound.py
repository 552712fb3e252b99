"""The smoke test bounds generation itself: byte-fallback output that never completes a UTF-8 character
(which llama-cpp-python 0.3.36 does not count against ``max_tokens``) is a failed "did not stop" check,
not a context overflow and ``RuntimeError: llama_decode returned 1``."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from runner.spec.model import SmokePrompt


@pytest.fixture(scope="module")
def byte_babbler(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A one-layer Qwen2 GGUF with the R1 tokenizer that always emits the byte 0xE6 (a UTF-8 lead byte).

    Attention and MLP outputs are zero, so the last hidden state is the (all-ones) embedding, and the
    output layer scores only that byte token: greedy decoding never finishes a character nor stops.
    """
    import torch
    from transformers import AutoTokenizer, Qwen2Config, Qwen2ForCausalLM

    from runner.llamacpp.converter import converter_script
    from runner.models.random import build_r1_tokenizer, padded_vocab

    out = tmp_path_factory.mktemp("babbler")
    tokenizer = AutoTokenizer.from_pretrained(build_r1_tokenizer(out / "model"))
    lead_byte = tokenizer.convert_tokens_to_ids("æ")  # byte-level BPE's token for the byte 0xE6
    config = Qwen2Config(
        vocab_size=padded_vocab(len(tokenizer)),
        hidden_size=64,
        intermediate_size=128,
        num_hidden_layers=1,
        num_attention_heads=4,
        num_key_value_heads=2,
        tie_word_embeddings=False,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
    )
    model = Qwen2ForCausalLM(config)
    with torch.no_grad():
        for name, param in model.named_parameters():
            if "norm" not in name:
                param.zero_()
        model.model.embed_tokens.weight.fill_(1.0)
        model.lm_head.weight[lead_byte].fill_(1.0)
    model.save_pretrained(out / "model")
    gguf = out / "babbler-f16.gguf"
    subprocess.run(
        [
            sys.executable,
            str(converter_script()),
            str(out / "model"),
            "--outtype",
            "f16",
            "--outfile",
            str(gguf),
        ],
        check=True,
        capture_output=True,
    )
    return gguf


def test_output_that_never_completes_a_character_is_reported_as_not_stopping(byte_babbler: Path) -> None:
    from runner.pipeline.stages.smoke import answer_with_gguf

    question = SmokePrompt(prompt="只剩一个心脏了还能活吗？")  # type: ignore[call-arg]
    found = answer_with_gguf(str(byte_babbler), 96, [question], 12, None)
    assert found.template  # the R1 template is embedded
    [result] = found.results
    assert result["completion_tokens"] == 12 and result["finish_reason"] == "length"
    [stops] = [c for c in result["checks"] if c["name"] == "stops before max_tokens"]
    assert not stops["ok"] and stops["detail"].startswith("did not stop")
    assert not result["ok"] and "answer" in result
