"""Token ids and label masks per template style, on the tiny model's tokenizer and on real Qwen2's.

What must hold for every style: the loss covers the answer (and its end token) only, the answer ends
with EOS / end-of-turn exactly once, BOS appears at most once, and padding never masks the real EOS.
"""

from __future__ import annotations

import re
from typing import Any

import pytest

from runner.dataset.formats import Example, Message, to_example
from runner.dataset.read import DataError
from runner.dataset.templates import IGNORE, chat_template_for, r1_inference_template, tokenize_example
from runner.spec.model import TemplateSpec

ROW = {"Question": "What is two plus two?", "Complex_CoT": "Add two and two.", "Response": "Four."}
COLUMNS = {"prompt": "Question", "reasoning": "Complex_CoT", "response": "Response"}


@pytest.fixture(scope="session")
def tiny_tokenizer() -> Any:
    from runner.models.resolve import load_tokenizer

    return load_tokenizer("tuneq:tiny-llama")


@pytest.fixture(scope="session")
def qwen2_tokenizer() -> Any:
    """The real Qwen2 tokenizer (the R1-Distill-Qwen family), rebuilt from llama.cpp's vocab GGUF."""
    from transformers import AutoTokenizer

    from runner.llamacpp.converter import vocab_gguf

    path = vocab_gguf("qwen2")
    if not path.exists():
        pytest.skip("llama.cpp vocab files not installed (just setup)")
    return AutoTokenizer.from_pretrained(path.parent, gguf_file=path.name)


def trained_text(tokenizer: Any, ids: list[int], labels: list[int]) -> str:
    return str(tokenizer.decode([t for t, lab in zip(ids, labels, strict=True) if lab != IGNORE]))


def example() -> Example:
    return to_example(ROW, "columns", COLUMNS)


def test_r1_trains_reasoning_and_answer_and_ends_with_one_eos(tiny_tokenizer: Any) -> None:
    tok = tiny_tokenizer
    row = tokenize_example(example(), TemplateSpec(style="r1"), tok, 512)
    bos, eos = tok.decode([tok.bos_token_id]), tok.decode([tok.eos_token_id])
    text = tok.decode(row.input_ids)
    assert text.startswith(f"{bos}<｜User｜>What is two plus two?<｜Assistant｜><think>\n")
    assert trained_text(tok, row.input_ids, row.labels) == f"Add two and two.\n</think>\n\nFour.{eos}"
    assert row.input_ids.count(tok.eos_token_id) == 1 and row.input_ids[-1] == tok.eos_token_id
    assert row.labels[-1] == tok.eos_token_id
    assert row.input_ids.count(tok.bos_token_id) == 1 and row.input_ids[0] == tok.bos_token_id
    first_trained = next(i for i, lab in enumerate(row.labels) if lab != IGNORE)
    assert all(lab == IGNORE for lab in row.labels[:first_trained])


def test_alpaca_keeps_the_prompt_out_of_the_loss(tiny_tokenizer: Any) -> None:
    tok = tiny_tokenizer
    row = tokenize_example(example(), TemplateSpec(style="alpaca"), tok, 512)
    assert "### Instruction:\nWhat is two plus two?" in tok.decode(row.input_ids)
    assert trained_text(tok, row.input_ids, row.labels).startswith("<think>\nAdd two and two.")
    assert row.input_ids.count(tok.eos_token_id) == 1 and row.input_ids.count(tok.bos_token_id) == 1


def test_custom_template_uses_columns(tiny_tokenizer: Any) -> None:
    tok = tiny_tokenizer
    spec = TemplateSpec(
        style="custom",
        prompt="### Question:\n{Question}\n### Response:\n",
        completion="<think>{reasoning}</think>{response}",
    )
    row = tokenize_example(example(), spec, tok, 512)
    eos = tok.decode([tok.eos_token_id])
    assert trained_text(tok, row.input_ids, row.labels) == f"<think>Add two and two.</think>Four.{eos}"


def test_unknown_field_in_custom_template_is_a_data_error(tiny_tokenizer: Any) -> None:
    spec = TemplateSpec(style="custom", prompt="{nope}", completion="{response}")
    with pytest.raises(DataError, match="'nope'"):
        tokenize_example(example(), spec, tiny_tokenizer, 512)


def test_truncation_can_leave_nothing_to_learn(tiny_tokenizer: Any) -> None:
    row = tokenize_example(example(), TemplateSpec(style="r1"), tiny_tokenizer, 8)
    assert row.truncated and row.trainable == 0 and len(row.input_ids) == 8


def test_qwen2_chat_template_multi_turn_trains_every_assistant_turn(qwen2_tokenizer: Any) -> None:
    tok = qwen2_tokenizer
    conv = Example(
        (
            Message("user", "Hi"),
            Message("assistant", "Hello!"),
            Message("user", "2+2?"),
            Message("assistant", "4"),
        )
    )
    row = tokenize_example(conv, TemplateSpec(style="chat"), tok, 512)
    assert tok.bos_token_id is None and row.input_ids[0] == tok.convert_tokens_to_ids("<|im_start|>")
    assert trained_text(tok, row.input_ids, row.labels) == "Hello!<|im_end|>\n4<|im_end|>"
    assert row.input_ids[-1] == tok.convert_tokens_to_ids("<|im_end|>")
    assert tok.eos_token_id not in row.input_ids  # <|im_end|> already ends the turn: nothing appended
    assert "<|im_start|>user\n2+2?<|im_end|>" in tok.decode(row.input_ids)


def test_qwen2_r1_template_keeps_reasoning(qwen2_tokenizer: Any) -> None:
    tok = qwen2_tokenizer
    row = tokenize_example(example(), TemplateSpec(style="r1"), tok, 512)
    assert "Add two and two.\n</think>\n\nFour." in trained_text(tok, row.input_ids, row.labels)
    assert row.input_ids[-1] == tok.eos_token_id and row.input_ids.count(tok.eos_token_id) == 1


def test_padding_with_eos_never_masks_the_real_eos(qwen2_tokenizer: Any) -> None:
    """Qwen2's pad token *is* its EOS (seed 000's trap); explicit labels keep the EOS trained."""
    from trl.trainer.sft_trainer import DataCollatorForLanguageModeling

    tok = qwen2_tokenizer
    assert tok.pad_token_id == tok.eos_token_id
    short = tokenize_example(example(), TemplateSpec(style="r1"), tok, 512)
    long = tokenize_example(
        to_example({**ROW, "Response": "Four, since two and two make four."}, "columns", COLUMNS),
        TemplateSpec(style="r1"),
        tok,
        512,
    )
    batch = DataCollatorForLanguageModeling(pad_token_id=tok.pad_token_id)(
        [{"input_ids": r.input_ids, "labels": r.labels} for r in (short, long)]
    )
    labels = batch["labels"][0].tolist()
    assert labels[len(short.input_ids) - 1] == tok.eos_token_id  # the real EOS keeps its label
    assert all(lab == IGNORE for lab in labels[len(short.input_ids) :])  # the padding does not


def test_chat_template_that_drops_reasoning_is_refused(qwen2_tokenizer: Any) -> None:
    dropping = "{% for m in messages %}{{ m['content'].split('</think>')[-1] }}<|im_end|>{% endfor %}"
    tok = qwen2_tokenizer
    saved = tok.chat_template
    tok.chat_template = dropping
    try:
        with pytest.raises(DataError, match="drops the <think> reasoning"):
            tokenize_example(example(), TemplateSpec(style="chat"), tok, 512)
    finally:
        tok.chat_template = saved


def test_embedded_templates_have_no_training_markers(tiny_tokenizer: Any) -> None:
    assert re.search(r"\{%-?\s*(end)?generation", r1_inference_template()) is None
    assert "### Instruction" in chat_template_for(TemplateSpec(style="alpaca"), tiny_tokenizer)


LLAMA3_CHAT_TEMPLATE = (  # Llama 3's chat template (the vocab GGUF carries none)
    "{{ bos_token }}{% for m in messages %}<|start_header_id|>{{ m['role'] }}<|end_header_id|>\n\n"
    "{{ m['content'] | trim }}<|eot_id|>{% endfor %}"
    "{% if add_generation_prompt %}<|start_header_id|>assistant<|end_header_id|>\n\n{% endif %}"
)


@pytest.fixture(scope="session")
def real_tokenizers(qwen2_tokenizer: Any, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """Byte-level BPE families users train: Qwen2, R1-Distill-Qwen (Qwen2 + <think> tokens), Llama 3."""
    from transformers import AutoTokenizer

    from runner.llamacpp.converter import vocab_gguf
    from runner.models.random import build_r1_tokenizer

    llama3 = vocab_gguf("llama-bpe")
    tokenizer = AutoTokenizer.from_pretrained(llama3.parent, gguf_file=llama3.name)
    tokenizer.chat_template = LLAMA3_CHAT_TEMPLATE
    r1 = AutoTokenizer.from_pretrained(build_r1_tokenizer(tmp_path_factory.mktemp("r1-tokenizer")))
    return {"qwen2": qwen2_tokenizer, "r1-qwen": r1, "llama3": tokenizer}


BOUNDARY_CASES = [
    ("r1", True, {}),
    ("r1", False, {}),  # seed 000's case: "<think>\n" + "\n</think>" merged into one "\n\n" token
    ("chat", False, {}),
    ("chat", True, {}),
    ("alpaca", False, {}),
    ("alpaca", True, {}),
    ("custom", False, {"prompt": "Question: {prompt}\nAnswer: ", "completion": "{response}"}),
]


@pytest.mark.parametrize("family", ["qwen2", "r1-qwen", "llama3"])
@pytest.mark.parametrize(("style", "reasoning", "custom"), BOUNDARY_CASES)
def test_inference_prompt_is_the_token_prefix_of_the_training_row(
    real_tokenizers: dict[str, Any], family: str, style: str, reasoning: bool, custom: dict[str, str]
) -> None:
    """The model is trained to continue exactly the tokens it is prompted with after export."""
    from runner.dataset.templates import generation_prompt_ids

    if style == "chat" and family == "r1-qwen":
        pytest.skip("the R1 template renders turns inconsistently for style chat: see the advice test below")
    tok = real_tokenizers[family]
    spec = TemplateSpec(style=style, **custom)  # type: ignore[arg-type]
    row = {**ROW, "Complex_CoT": ROW["Complex_CoT"] if reasoning else ""}
    trained = tokenize_example(to_example(row, "columns", COLUMNS), spec, tok, 512)
    prompt = generation_prompt_ids(tok, ROW["Question"], chat_template_for(spec, tok))
    assert trained.input_ids[: len(prompt)] == prompt, (
        tok.convert_ids_to_tokens(prompt[-3:]),
        tok.convert_ids_to_tokens(trained.input_ids[len(prompt) - 3 : len(prompt) + 1]),
    )
    assert all(label == IGNORE for label in trained.labels[: len(prompt)])
    assert trained.labels[len(prompt)] == trained.input_ids[len(prompt)]
    assert "Four." in trained_text(tok, trained.input_ids, trained.labels)


@pytest.mark.parametrize("turns", [1, 2])
def test_inconsistent_chat_template_advice_works_for_the_data(
    real_tokenizers: dict[str, Any], turns: int
) -> None:
    """R1's own template renders an answer without reasoning inconsistently for style chat; every style
    the error advises must then be accepted by the job file and tokenize the same data."""
    from runner.spec import parse_spec

    tok = real_tokenizers["r1-qwen"]
    pair = (Message("user", "What is two plus two?"), Message("assistant", "Four."))
    conv = Example(pair * turns)
    with pytest.raises(DataError, match="renders turns inconsistently") as info:
        tokenize_example(conv, TemplateSpec(style="chat"), tok, 512)
    advised = re.findall(r"'(r1|alpaca|custom|chat)'", str(info.value).split("use template.style")[1])
    assert advised and "chat" not in advised
    for style in advised:
        job = (
            f'name = "t"\n[model]\nbase = "x"\n[data]\nsource = "rows.jsonl"\nformat = "columns"\n'
            f'[data.columns]\nprompt = "Question"\nresponse = "Response"\n[template]\nstyle = "{style}"\n'
        )
        spec = parse_spec(job, "job.toml").template
        row = tokenize_example(conv, spec, tok, 512)
        assert trained_text(tok, row.input_ids, row.labels).count("Four.") == turns


def test_truncation_names_the_rows_and_the_tokens_cut(qwen2_tokenizer: Any) -> None:
    from runner.dataset.templates import truncation_warning

    tok = qwen2_tokenizer
    long = {**ROW, "Response": "Four. " * 40}
    examples = [to_example(r, "columns", COLUMNS, number=n) for n, r in ((3, ROW), (7, long), (9, ROW))]
    whole = [tokenize_example(e, TemplateSpec(style="chat"), tok, 4096) for e in examples]
    rows = [tokenize_example(e, TemplateSpec(style="chat"), tok, 64) for e in examples]
    assert [r.truncated for r in rows] == [False, True, False]
    cut = len(whole[1].input_ids) - 64
    assert rows[1].cut == cut
    warning = truncation_warning(examples, rows, 64)
    assert warning is not None
    assert warning.startswith("1 of 3 examples are longer than model.max_seq_length 64")
    assert f"row 7 ({len(whole[1].input_ids)} tokens, {cut} cut)" in warning
    assert truncation_warning(examples, whole, 4096) is None
