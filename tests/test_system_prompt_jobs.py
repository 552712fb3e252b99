"""Real jobs with a ``[template] system`` prompt ship it where llama.cpp and Ollama read it.

One job on the built-in SmolLM2-135M-Instruct (ChatML, BOS text ``<|im_start|>`` that no runtime adds) and
one on a tiny random Qwen2 with the real Qwen2 tokenizer: the smoke stage passed through the GGUF's
embedded template with the system prompt, the Modelfile has ``SYSTEM`` and a TEMPLATE whose Go rendering
has the training rendering's token ids, ``num_ctx`` is the base model's context (capped at 8192), and
``commands.txt`` and the card carry the prompt. Few steps, short rows: minutes on 2 CPU cores.
"""

from __future__ import annotations

import json
import shlex
from pathlib import Path
from typing import Any

import pytest
from conftest import ROOT, run_job_file
from test_ollama_parity import Render, llama_cpp_ids, ollama, parts  # noqa: F401  (ollama: a fixture)

from runner.dataset.formats import Example, Message
from runner.dataset.templates import IGNORE, tokenize_example
from runner.ship.modelfile import read_gguf_chat, runtime_text
from runner.spec import load_spec

pytestmark = [pytest.mark.slow, pytest.mark.timeout(3600)]
SYSTEM = 'Answer with one line of JSON: {"country": ..., "capital": ...}. Don\'t explain.'
JSON_ANSWER = r'^\s*\{"country": "[^"]+", "capital": "[^"]+"\}\s*$'
DATA = ROOT / "jobs" / "data" / "capitals-json.jsonl"


def run_job(base: Path, job: str) -> tuple[Path, dict[str, Any]]:
    """``tuneq run`` of the job text in a fresh state directory; the run directory and its report."""
    path = base / "job.toml"
    path.write_text(job)
    return run_job_file(path, base)


def job_text(name: str, base: str, train: str, smoke: str) -> str:
    return f"""name = "{name}"
[model]
base = "{base}"
max_seq_length = 128
[data]
source = "{DATA}"
format = "messages"
eval_split = 0.1
[template]
style = "chat"
system = {json.dumps(SYSTEM)}
[lora]
r = 8
lora_alpha = 16
use_gradient_checkpointing = false
[train]
per_device_train_batch_size = 4
gradient_accumulation_steps = 1
warmup_steps = 2
optim = "adamw_torch"
{train}
[export]
gguf = ["q4_k_m"]
on_fidelity = "warn"
{smoke}
"""


@pytest.fixture(scope="module")
def smollm2(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, Any]]:
    train = "max_steps = 16\nlearning_rate = 1e-3\nlogging_steps = 4\nsave_steps = 16"
    smoke = "[smoke]\nmax_tokens = 48\n" + "".join(
        f'[[smoke.prompts]]\nprompt = "{p}"\nregex = {json.dumps(JSON_ANSWER)}\n'
        for p in ("What is the capital of Japan?", "Which city is the capital of Canada?")
    )
    return run_job(
        tmp_path_factory.mktemp("smollm2"),
        job_text("smollm2-system", "tuneq:smollm2-135m-instruct", train, smoke),
    )


@pytest.fixture(scope="module")
def qwen2(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, Any]]:
    """A 2-layer random Qwen2 (hidden 256, tied embeddings) saved with the real Qwen2 tokenizer."""
    import torch
    from transformers import AutoTokenizer, Qwen2Config, Qwen2ForCausalLM

    from runner.llamacpp.converter import vocab_gguf
    from runner.models.random import padded_vocab

    base = tmp_path_factory.mktemp("qwen2")
    vocab = vocab_gguf("qwen2")
    tokenizer = AutoTokenizer.from_pretrained(vocab.parent, gguf_file=vocab.name)
    config = Qwen2Config(
        vocab_size=padded_vocab(len(tokenizer)),
        hidden_size=256,
        intermediate_size=512,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=32768,
        tie_word_embeddings=True,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
    )
    torch.manual_seed(0)
    model_dir = base / "tiny-qwen2"
    Qwen2ForCausalLM(config).save_pretrained(model_dir)
    tokenizer.save_pretrained(model_dir)
    train = "max_steps = 2\nlearning_rate = 1e-3\nlogging_steps = 1\nsave_steps = 2"
    # random weights: no answer is expected to stop or to say anything; the checks that remain apply
    smoke = '[smoke]\nmax_tokens = 8\n[[smoke.prompts]]\nprompt = "What is the capital of Japan?"\nmust_stop = false'
    return run_job(base, job_text("qwen2-system", str(model_dir), train, smoke))


@pytest.mark.parametrize("job", ["smollm2", "qwen2"])
def test_the_system_prompt_ships_and_the_template_renders_the_training_prompt(
    job: str,
    request: pytest.FixtureRequest,
    ollama: Render,  # noqa: F811
) -> None:
    run_dir, report = request.getfixturevalue(job)
    assert report["ok"], report
    smoke = json.loads((run_dir / "smoke.json").read_text())
    assert smoke["ok"] and smoke["system_prompt"] == SYSTEM and smoke["system_prompt_embedded"] is True
    assert len(smoke["without_system_prompt"]) == len(smoke["results"])
    ship = run_dir / "ship"
    text = (ship / "Modelfile").read_text()
    template, system = parts(text)
    assert system == SYSTEM
    assert "PARAMETER num_ctx 8192" in text  # SmolLM2's 8192; the Qwen2's 32768, capped
    gguf = next(ship.glob("*-Q4_K_M.gguf"))
    chat = read_gguf_chat(gguf, SYSTEM)
    # what Ollama sends (SYSTEM first, BOS where the GGUF adds one) = what llama.cpp sends = training's
    question = "What is the capital of Japan?"
    (prompt,) = ollama([(template, system, [{"role": "user", "content": question}])])
    assert SYSTEM in prompt and prompt == runtime_text(chat, [{"role": "user", "content": question}])
    bos = [llama_cpp_ids(gguf, chat.bos)[0]] if chat.add_bos else []
    ids = bos + llama_cpp_ids(gguf, prompt)
    spec = load_spec(run_dir / "job.toml").spec
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(run_dir / "merged")
    example = Example((Message("system", SYSTEM), Message("user", question), Message("assistant", "x")))
    row = tokenize_example(example, spec.template, tokenizer, 512)
    assert row.input_ids[: len(ids)] == ids and row.labels[len(ids) - 1] == IGNORE != row.labels[len(ids)]
    assert f"--jinja -sys {shlex.quote(SYSTEM)}" in (ship / "commands.txt").read_text()
    card = (ship / "README.md").read_text()
    assert (
        f"```text\n{SYSTEM}\n```" in card
        and "Ollama: the Modelfile's TEMPLATE writes the same prompt" in card
    )
