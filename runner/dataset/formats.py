"""Turn rows of any supported format into one shape: a conversation of :class:`Message` s.

Formats: alpaca (instruction/input/output), sharegpt (conversations: from/value), messages
(role/content), prompt_completion, and columns (an explicit mapping, e.g. the medical-o1 CoT data:
prompt=Question, reasoning=Complex_CoT, response=Response).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from runner.dataset.read import DataError, Row

_SHAREGPT_ROLES = {
    "human": "user",
    "user": "user",
    "gpt": "assistant",
    "assistant": "assistant",
    "system": "system",
    "chatgpt": "assistant",
    "bing": "assistant",
    "bard": "assistant",
}


@dataclass(frozen=True)
class Message:
    """One turn; an assistant turn may carry its reasoning (the part inside ``<think>``)."""

    role: str
    content: str
    reasoning: str | None = None


@dataclass(frozen=True)
class Example:
    """A normalized training example plus the raw row (for custom templates)."""

    messages: tuple[Message, ...]
    fields: dict[str, Any] = field(default_factory=dict)
    row: int = 0  # its 1-based row in the data (0: not from a file), for messages about it


_PROMPT_NAMES = ("question", "prompt", "instruction", "query", "input", "problem", "user", "human", "text")
_RESPONSE_NAMES = ("answer", "response", "output", "completion", "solution", "assistant", "gpt", "reply")


def detect_format(columns: set[str], where: str = "the data", row: int = 1) -> str:
    """Guess the format from the column names of the first row (number ``row``); :class:`DataError` naming
    ``where``, the row and a mapping of its own columns when none fits."""
    if "messages" in columns:
        return "messages"
    if "conversations" in columns:
        return "sharegpt"
    if {"instruction", "output"} <= columns:
        return "alpaca"
    if {"prompt", "completion"} <= columns:
        return "prompt_completion"
    near = [
        f"format '{fmt}' would need {' and '.join(map(repr, sorted(need)))}, row {row} lacks "
        f"{' and '.join(map(repr, sorted(need - columns)))}"
        for fmt, need in (
            ("alpaca", {"instruction", "output"}),
            ("prompt_completion", {"prompt", "completion"}),
        )
        if need & columns
    ]
    raise DataError(
        f"{where}: cannot tell the data format from the columns of row {row} {sorted(columns)}"
        + (f" ({'; '.join(near)})" if near else "")
        + f"; {suggest_mapping(columns)}",
        key="data.format",
    )


def suggest_mapping(columns: set[str]) -> str:
    """A ``format = "columns"`` mapping of these columns, picked by their names (or their order)."""
    by_lower = {c.lower(): c for c in sorted(columns)}

    def pick(names: tuple[str, ...], taken: str | None) -> str | None:
        return next((by_lower[n] for n in names if n in by_lower and by_lower[n] != taken), None)

    prompt = pick(_PROMPT_NAMES, None)
    response = pick(_RESPONSE_NAMES, prompt)
    rest = [c for c in sorted(columns) if c not in (prompt, response)]
    prompt = prompt or (rest.pop(0) if rest else "QUESTION_COLUMN")
    response = response or (rest.pop(0) if rest else "ANSWER_COLUMN")
    return (
        f'set data.format = "columns" and map them: [data.columns] prompt = "{prompt}", '
        f'response = "{response}"'
    )


def required_columns(fmt: str, mapping: dict[str, str]) -> set[str]:
    """The columns a format needs in every row."""
    return {
        "alpaca": {"instruction", "output"},
        "sharegpt": {"conversations"},
        "messages": {"messages"},
        "prompt_completion": {"prompt", "completion"},
        "columns": set(mapping.values()),
    }[fmt]


def to_example(
    row: Row, fmt: str, mapping: dict[str, str], system: str | None = None, number: int = 0
) -> Example:
    """Normalize one row; raises :class:`DataError` when a value has the wrong shape."""
    messages = list(_MAKERS[fmt](row, mapping))
    if system and not any(m.role == "system" for m in messages):
        messages.insert(0, Message("system", system))
    if not messages or messages[-1].role != "assistant":
        raise DataError("the example does not end with an assistant turn")
    for m in messages:
        if not isinstance(m.content, str):
            raise DataError(f"a {m.role} turn is {type(m.content).__name__}, not text")
    return Example(tuple(messages), dict(row), number)


def _text(row: Row, key: str) -> str:
    value = row.get(key)
    if value is None:
        return ""
    return value if isinstance(value, str) else str(value)


def _alpaca(row: Row, _: dict[str, str]) -> list[Message]:
    prompt = _text(row, "instruction")
    if _text(row, "input").strip():
        prompt += "\n\n" + _text(row, "input")
    return [Message("user", prompt), Message("assistant", _text(row, "output"))]


def _sharegpt(row: Row, _: dict[str, str]) -> list[Message]:
    turns = row.get("conversations")
    if not isinstance(turns, list):
        raise DataError("'conversations' must be a list of {from, value} objects")
    out = []
    for turn in turns:
        if not isinstance(turn, dict) or "from" not in turn or "value" not in turn:
            raise DataError("each conversations entry needs 'from' and 'value'")
        role = _SHAREGPT_ROLES.get(str(turn["from"]).lower())
        if role is None:
            raise DataError(f"unknown sharegpt speaker '{turn['from']}' (use human/gpt/system)")
        out.append(Message(role, turn["value"]))
    return out


def _messages(row: Row, _: dict[str, str]) -> list[Message]:
    turns = row.get("messages")
    if not isinstance(turns, list):
        raise DataError("'messages' must be a list of {role, content} objects")
    out = []
    for turn in turns:
        if not isinstance(turn, dict) or "role" not in turn or "content" not in turn:
            raise DataError("each messages entry needs 'role' and 'content'")
        reasoning = turn.get("reasoning_content") or turn.get("reasoning")
        out.append(Message(str(turn["role"]), turn["content"], reasoning or None))
    return out


def _prompt_completion(row: Row, _: dict[str, str]) -> list[Message]:
    return [Message("user", _text(row, "prompt")), Message("assistant", _text(row, "completion"))]


def _columns(row: Row, mapping: dict[str, str]) -> list[Message]:
    messages = []
    if "system" in mapping and _text(row, mapping["system"]).strip():
        messages.append(Message("system", _text(row, mapping["system"])))
    reasoning = _text(row, mapping["reasoning"]) if "reasoning" in mapping else None
    messages.append(Message("user", _text(row, mapping["prompt"])))
    messages.append(Message("assistant", _text(row, mapping["response"]), reasoning or None))
    return messages


_MAKERS = {
    "alpaca": _alpaca,
    "sharegpt": _sharegpt,
    "messages": _messages,
    "prompt_completion": _prompt_completion,
    "columns": _columns,
}
