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
    """One training row: ids, labels, and whether truncation cut it."""

    input_ids: list[int]
    labels: list[int]
    truncated: bool

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
            f"style '{template.style}' takes single-turn examples; use style 'chat' for conversations"
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
                "the chat template renders turns inconsistently (a prefix changes when a turn is added); "
                "use template.style = 'r1' or 'alpaca'"
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


def tokenize_example(
    example: Example, template: TemplateSpec, tokenizer: Any, max_seq_length: int
) -> Tokenized:
    """Token ids and labels for one example, truncated to ``max_seq_length``.

    The whole text is tokenized once (as at inference), and a token carries the loss when it starts
    inside a trained segment, so segment borders never change how the text splits into tokens.
    """
    segments = render_segments(example, template, tokenizer)
    last = max(i for i, (_, trained) in enumerate(segments) if trained)
    segments = [
        (text.rstrip(), True) if i == last else (text, trained)
        for i, (text, trained) in enumerate(segments[: last + 1])
    ]
    text = "".join(t for t, _ in segments)
    spans, position = [], 0
    for piece, trained in segments:
        if trained:
            spans.append((position, position + len(piece)))
        position += len(piece)
    encoded = tokenizer(text, add_special_tokens=False, return_offsets_mapping=True)
    ids: list[int] = list(encoded["input_ids"])
    labels = [
        tid if any(a <= start < b for a, b in spans) else IGNORE
        for tid, (start, _) in zip(ids, encoded["offset_mapping"], strict=True)
    ]
    if not _ends_turn(tokenizer, ids):
        ids.append(tokenizer.eos_token_id)
        labels.append(tokenizer.eos_token_id)
    bos = tokenizer.bos_token_id
    if bos is not None and adds_bos(tokenizer) and ids[0] != bos:
        ids.insert(0, bos)
        labels.insert(0, IGNORE)
    truncated = len(ids) > max_seq_length
    return Tokenized(ids[:max_seq_length], labels[:max_seq_length], truncated)


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
    "{%- for m in messages %}{% if m['role'] == 'user' %}\n\n### Instruction:\n{{ m['content'] }}\n\n### Response:\n"
    "{% elif m['role'] == 'assistant' %}{{ m['content'] }}{{ eos_token }}{% endif %}{% endfor %}"
)


def chat_template_for(template: TemplateSpec, tokenizer: Any) -> str:
    """The chat template to embed in exported models, so llama.cpp prompts them as they were trained."""
    if template.style == "r1":
        return r1_inference_template()
    if template.style == "alpaca":
        return _ALPACA_CHAT_TEMPLATE
    if template.style == "custom":
        return _custom_chat_template(template.prompt or "")
    return str(tokenizer.chat_template)


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
