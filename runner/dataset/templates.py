"""Render an :class:`Example` into token ids and labels, with the loss on the answer only.

Rules every style follows (the seeds broke each of them):
- the text is split into segments that are either context (label -100) or trained (label = id);
- each trained answer ends with the end-of-turn/EOS token exactly once; nothing is ever padded with EOS
  and then masked (padding happens later, with labels -100, so the real EOS keeps its label);
- a BOS appears once at most: templates that write it are tokenized without adding another;
- reasoning stays in the target: style ``r1`` uses TRL's DeepSeek-R1-Distill *training* template (the
  stock one deletes everything up to ``</think>``), and ``chat`` fails loudly if the model's template
  drops the reasoning.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from functools import cache
from importlib import resources
from typing import Any

from runner.dataset.formats import Example, Message
from runner.dataset.read import DataError
from runner.spec.model import TemplateSpec

IGNORE = -100
ALPACA_SYSTEM = "Below is an instruction that describes a task. Write a response that appropriately completes the request."
# Turn-end tokens of common chat templates: when an answer already ends with one, no EOS is added.
END_OF_TURN = ("<|im_end|>", "<|eot_id|>", "<|end|>", "<end_of_turn>", "<|endoftext|>")
Segment = tuple[str, bool]


@dataclass(frozen=True)
class Tokenized:
    """One training row: ids, labels, and how many tokens truncation cut off its end."""

    input_ids: list[int]
    labels: list[int]
    cut: int = 0

    @property
    def truncated(self) -> bool:
        """Whether truncation to ``max_seq_length`` cut the row."""
        return self.cut > 0

    @property
    def trainable(self) -> int:
        """How many tokens carry the loss."""
        return sum(1 for label in self.labels if label != IGNORE)


@cache
def r1_training_template() -> str:
    """TRL's DeepSeek-R1-Distill training template (keeps ``<think>``, marks assistant output)."""
    return resources.files("trl").joinpath("chat_templates/deepseek_r1_distill_training.jinja").read_text()


def strip_generation_tags(template: str) -> str:
    """Remove ``{% generation %}`` markers, which only transformers understands (llama.cpp does not)."""
    return re.sub(r"\{%-?\s*(end)?generation\s*-?%\}", "", template)


def r1_inference_template() -> str:
    """The template embedded in exported models of ``r1`` jobs: the training one, without its markers."""
    without_comment = re.sub(r"\{#.*?#\}\s*", "", r1_training_template(), flags=re.DOTALL)
    return strip_generation_tags(without_comment)


def assistant_text(message: Message, always_think: bool = False) -> str:
    """An assistant turn's text, its reasoning wrapped in ``<think>`` as R1-style models expect.

    With ``always_think`` (style r1) an answer without reasoning gets an empty think block, as the R1
    distills produce for direct answers, so the prompt always ends with ``<think>\\n``.
    """
    if message.reasoning or always_think:
        return f"<think>\n{(message.reasoning or '').strip()}\n</think>\n\n{message.content}"
    return message.content


def render_segments(example: Example, template: TemplateSpec, tokenizer: Any) -> list[Segment]:
    """Split one example into context and trained text, by the job's template style."""
    if template.style in ("alpaca", "custom"):
        prompt, completion = _plain_prompt_completion(example, template)
        return [(prompt, False), (completion, True)]
    chat_template = r1_training_template() if template.style == "r1" else tokenizer.chat_template
    if not chat_template:
        raise DataError("the model has no chat template: use template.style = 'r1', 'alpaca' or 'custom'")
    return _chat_segments(example, tokenizer, chat_template, always_think=template.style == "r1")


def _plain_prompt_completion(example: Example, template: TemplateSpec) -> tuple[str, str]:
    messages = example.messages
    if sum(1 for m in messages if m.role == "assistant") != 1:
        raise DataError(
            f"style '{template.style}' takes single-turn examples; use style 'chat' or 'r1' for conversations"
        )
    system = next((m.content for m in messages if m.role == "system"), template.system)
    user = next(m for m in messages if m.role == "user")
    answer = messages[-1]
    if template.style == "custom":
        values = {
            **example.fields,
            "system": system or "",
            "prompt": user.content,
            "reasoning": answer.reasoning or "",
            "response": answer.content,
        }
        try:
            return template.prompt.format(**values), template.completion.format(**values)  # type: ignore[union-attr]
        except KeyError as exc:
            raise DataError(
                f"template field {exc} is not a column or one of prompt/reasoning/response/system"
            ) from None
    header = system or ALPACA_SYSTEM
    return f"{header}\n\n### Instruction:\n{user.content}\n\n### Response:\n", assistant_text(answer)


def _chat_segments(example: Example, tokenizer: Any, chat_template: str, always_think: bool) -> list[Segment]:
    if any(m.role == "system" for m in example.messages) and not carries_system(chat_template):
        raise DataError(
            "the model's chat template has no system role, so system messages would be dropped: remove "
            "template.system (and system turns from the data) or use template.style = 'r1' or 'alpaca'"
        )
    conversation = [
        {"role": m.role, "content": assistant_text(m, always_think) if m.role == "assistant" else m.content}
        for m in example.messages
    ]

    def render(upto: int, generation_prompt: bool) -> str:
        text: str = tokenizer.apply_chat_template(
            conversation[:upto],
            chat_template=chat_template,
            tokenize=False,
            add_generation_prompt=generation_prompt,
        )
        return text

    segments: list[Segment] = []
    done = ""
    for i, message in enumerate(conversation):
        if message["role"] != "assistant":
            continue
        before, after = render(i, True), render(i + 1, False)
        if not (before.startswith(done) and after.startswith(before)):
            raise DataError(
                "the model's chat template renders turns inconsistently (a prefix changes when a turn "
                f"is added), so the trained tokens would not be those it is prompted with; {_style_advice(example)}"
            )
        segments += [(before[len(done) :], False), (after[len(before) :], True)]
        done = after
        reasoning = example.messages[i].reasoning
        if reasoning and reasoning.strip() not in after:
            raise DataError(
                "the model's chat template drops the <think> reasoning from assistant turns; "
                "use template.style = 'r1' (it keeps the reasoning)"
            )
    return segments


def _style_advice(example: Example) -> str:
    """A template style that renders this example consistently, for an error message."""
    if sum(1 for m in example.messages if m.role == "assistant") > 1:
        return (
            "for conversations use template.style = 'r1' (it brings its own template; the alpaca and "
            "custom styles take single-turn examples only)"
        )
    return "use template.style = 'alpaca' or 'r1' (both work with or without reasoning in the data)"


def tokenize_example(
    example: Example, template: TemplateSpec, tokenizer: Any, max_seq_length: int
) -> Tokenized:
    """Token ids and labels for one example, truncated to ``max_seq_length``.

    The whole text is tokenized once, and a token carries the loss when it starts inside a trained
    segment. Where a token of that text spans a prompt/answer boundary (byte-level BPE merges the
    ``"\n"`` ending R1's ``<think>\n`` prompt with the ``"\n"`` opening an empty reasoning into one
    ``"\n\n"`` token), the row is re-split there (:func:`_split_at`): the prompt's tokens become exactly
    those of the prompt tokenized alone, as inference sees them, and the answer continues from them.
    """
    segments = render_segments(example, template, tokenizer)
    last = max(i for i, (_, trained) in enumerate(segments) if trained)
    segments = [
        (text.rstrip(), True) if i == last else (text, trained)
        for i, (text, trained) in enumerate(segments[: last + 1])
    ]
    text = "".join(t for t, _ in segments)
    spans, prompt_ends, position = [], [], 0
    for piece, trained in segments:
        if trained:
            spans.append((position, position + len(piece)))
            prompt_ends.append(position)
        position += len(piece)
    ids, starts = _encode(tokenizer, text)
    for end in prompt_ends:
        ids, starts = _split_at(tokenizer, text, end, ids, starts)
    labels = [
        tid if any(a <= start < b for a, b in spans) else IGNORE
        for tid, start in zip(ids, starts, strict=True)
    ]
    if not _ends_turn(tokenizer, ids):
        ids.append(tokenizer.eos_token_id)
        labels.append(tokenizer.eos_token_id)
    bos = tokenizer.bos_token_id
    if bos is not None and adds_bos(tokenizer) and ids[0] != bos:
        ids.insert(0, bos)
        labels.insert(0, IGNORE)
    return Tokenized(ids[:max_seq_length], labels[:max_seq_length], max(0, len(ids) - max_seq_length))


def truncation_warning(examples: list[Example], rows: list[Tokenized], max_seq_length: int) -> str | None:
    """A warning naming the examples longer than ``max_seq_length`` and the tokens cut, or None."""
    cut = [(e.row, r) for e, r in zip(examples, rows, strict=True) if r.truncated]
    if not cut:
        return None
    cut.sort()
    shown = ", ".join(
        f"row {number} ({len(r.input_ids) + r.cut} tokens, {r.cut} cut"
        + (", nothing left to learn)" if r.trainable == 0 else ")")
        for number, r in cut[:5]
    )
    more = f" and {len(cut) - 5} more" if len(cut) > 5 else ""
    return (
        f"{len(cut)} of {len(rows)} examples are longer than model.max_seq_length {max_seq_length} and lose "
        f"their end: {shown}{more}; raise model.max_seq_length to train them whole"
    )


def _encode(tokenizer: Any, text: str, offset: int = 0) -> tuple[list[int], list[int]]:
    """Token ids of ``text`` (no special tokens added) and each token's start in characters."""
    encoded = tokenizer(text, add_special_tokens=False, return_offsets_mapping=True)
    return list(encoded["input_ids"]), [offset + start for start, _ in encoded["offset_mapping"]]


def _split_at(
    tokenizer: Any, text: str, end: int, ids: list[int], starts: list[int]
) -> tuple[list[int], list[int]]:
    """``ids`` re-split so that they begin with the tokens of ``text[:end]`` tokenized alone.

    Unchanged when they already do. Otherwise the tokens before ``end`` are replaced by the prompt's
    own, and the text of tokens cut by the boundary is tokenized on its own after them.
    """
    prompt_ids, prompt_starts = _encode(tokenizer, text[:end])
    if ids[: len(prompt_ids)] == prompt_ids:
        return ids, starts
    after = next((i for i, start in enumerate(starts) if start >= end), len(ids))
    resume = starts[after] if after < len(ids) else len(text)
    bridge_ids, bridge_starts = _encode(tokenizer, text[end:resume], offset=end)
    return prompt_ids + bridge_ids + ids[after:], prompt_starts + bridge_starts + starts[after:]


def generation_prompt_ids(tokenizer: Any, prompt: str, chat_template: str | None = None) -> list[int]:
    """The token ids a model is prompted with for one user message, as at inference.

    The chat template renders the prompt with its generation prompt; BOS is added only when the
    template did not write one.
    """
    text: str = tokenizer.apply_chat_template(
        [{"role": "user", "content": prompt}],
        chat_template=chat_template,
        tokenize=False,
        add_generation_prompt=True,
    )
    has_bos = bool(tokenizer.bos_token) and text.startswith(tokenizer.bos_token)
    return list(tokenizer(text, add_special_tokens=not has_bos)["input_ids"])


def _ends_turn(tokenizer: Any, ids: list[int]) -> bool:
    if not ids:
        return False
    ends = {
        tokenizer.eos_token_id,
        *(tokenizer.convert_tokens_to_ids(t) for t in END_OF_TURN if t in tokenizer.get_vocab()),
    }
    return ids[-1] in ends


def adds_bos(tokenizer: Any) -> bool:
    """Whether this tokenizer family starts sequences with BOS (Llama does, Qwen does not)."""
    probe = tokenizer("a")["input_ids"]
    return bool(probe) and probe[0] == tokenizer.bos_token_id


_ALPACA_CHAT_TEMPLATE = (
    "{%- set ns = namespace(system='" + ALPACA_SYSTEM + "') -%}"
    "{%- for m in messages if m['role'] == 'system' %}{% set ns.system = m['content'] %}{% endfor -%}"
    "{{ ns.system }}"
    "{%- for m in messages %}{% if m['role'] == 'user' %}"
    "{{ '\\n\\n### Instruction:\\n' + m['content'] + '\\n\\n### Response:\\n' }}"
    "{% elif m['role'] == 'assistant' %}{{ m['content'] }}{{ eos_token }}{% endif %}{% endfor %}"
)  # newlines as Jinja strings: chat templates run with trim_blocks, which drops one after a block tag


def chat_template_for(template: TemplateSpec, tokenizer: Any) -> str:
    """The chat template to embed in exported models, so llama.cpp prompts them as they were trained.

    It writes the BOS itself where the tokenizer starts its rows with one (llama-cpp-python adds none to a
    rendered chat; llama.cpp and Ollama drop it and add their own), and it writes the job's system prompt
    when a conversation has no system message (:func:`with_default_system`).
    """
    if template.style == "r1":
        chat_template = r1_inference_template()
    elif template.style in ("alpaca", "custom"):
        body = (
            _ALPACA_CHAT_TEMPLATE
            if template.style == "alpaca"
            else _custom_chat_template(template.prompt or "")
        )
        chat_template = ("{{ bos_token }}" if adds_bos(tokenizer) else "") + body
    else:
        chat_template = str(tokenizer.chat_template)
    return with_default_system(chat_template, template.system)


def with_default_system(chat_template: str, system: str | None) -> str:
    """``chat_template`` writing ``system`` as the system message of a conversation that has none.

    That is what a model trained with the system prompt must be asked with, and where llama.cpp reads it:
    ``llama-cli`` without ``-sys`` and a ``llama-server`` client that sends no system message get it.
    Qwen2.5's own template defaults to its system prompt the same way.
    """
    return _default_system_prefix(system) + chat_template if system else chat_template


def without_default_system(chat_template: str, system: str | None) -> str:
    """The template :func:`with_default_system` wrapped, as the model was before its system prompt."""
    return chat_template.removeprefix(_default_system_prefix(system)) if system else chat_template


def _default_system_prefix(system: str) -> str:
    # a string literal that Jinja2 and llama.cpp's Jinja engine (common/jinja/lexer.h) both read back
    escapes = {"\\": "\\\\", "'": "\\'", "\n": "\\n", "\r": "\\r", "\t": "\\t"}
    literal = "'" + "".join(escapes.get(c, c) for c in system) + "'"
    return (
        "{%- if not (messages and messages[0]['role'] == 'system') %}"
        f"{{%- set messages = [{{'role': 'system', 'content': {literal}}}] + messages %}}"
        "{%- endif %}"
    )


def system_prompt_problem(template: TemplateSpec, chat_template: str | None) -> str | None:
    """Why the job's ``template.system`` cannot reach the model through its template, or None.

    ``chat_template`` is the base model's own (style ``chat``); None when it could not be read.
    """
    if not template.system:
        return None
    if template.style == "custom" and "{system}" not in (template.prompt or ""):
        return (
            "template.prompt has no {system} field, so the system prompt would be dropped: add {system} "
            "to template.prompt, or remove template.system"
        )
    if template.style != "chat" or chat_template is None:
        return None
    if not carries_system(chat_template):
        return (
            "the model's chat template has no system role, so the system prompt would be dropped: remove "
            "template.system, or use template.style = 'r1' or 'alpaca' (both carry one)"
        )
    return None


@cache
def carries_system(chat_template: str) -> bool:
    """Whether a chat template writes a system message (one that raises on it or drops it does not)."""
    from jinja2.exceptions import TemplateError
    from jinja2.ext import loopcontrols
    from jinja2.sandbox import ImmutableSandboxedEnvironment

    def raise_exception(message: str) -> None:
        raise TemplateError(message)

    # the environment transformers' apply_chat_template renders with
    env = ImmutableSandboxedEnvironment(trim_blocks=True, lstrip_blocks=True, extensions=[loopcontrols])
    env.globals["raise_exception"] = raise_exception
    marker = "SYSTEM-PROMPT-MARKER"
    messages = [{"role": "system", "content": marker}, {"role": "user", "content": "Hi"}]
    try:
        text = env.from_string(strip_generation_tags(chat_template)).render(
            messages=messages, add_generation_prompt=True, bos_token="", eos_token=""
        )
    except Exception:  # the template refuses the conversation: any error a template raises
        return False
    return marker in text


def _custom_chat_template(prompt: str) -> str:
    """A Jinja template that renders a custom ``prompt`` for the last user message."""
    from string import Formatter

    parts = [
        "{%- set ns = namespace(system='') -%}",
        "{%- for m in messages if m['role'] == 'system' %}{% set ns.system = m['content'] %}{% endfor -%}",
    ]
    for literal, name, _, _ in Formatter().parse(prompt):
        parts.append("{% raw %}" + literal + "{% endraw %}" if literal else "")
        if name == "prompt":
            parts.append("{{ (messages | selectattr('role', 'equalto', 'user') | list | last)['content'] }}")
        elif name == "system":
            parts.append("{{ ns.system }}")
    return "".join(parts)


def render_sample(row: Tokenized, tokenizer: Any) -> str:
    """A readable view of one training row: the full text, then only what carries the loss."""
    trained = [t for t, label in zip(row.input_ids, row.labels, strict=True) if label != IGNORE]
    return (
        f"--- full text ({len(row.input_ids)} tokens) ---\n{tokenizer.decode(row.input_ids)}\n"
        f"--- trained part ({len(trained)} tokens, loss only here) ---\n{tokenizer.decode(trained)}\n"
    )
