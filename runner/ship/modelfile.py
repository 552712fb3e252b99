"""How to talk to a shipped GGUF, read from its metadata, and the Ollama ``Modelfile`` written from it.

:class:`GgufChat` is the one definition: the embedded Jinja template (which writes the job's system
prompt when a conversation has none), BOS/EOS, whether the runtime adds the BOS, the base model's context
length, and the system prompt. The Modelfile, ``commands.txt`` and the model card are written from it.

The Ollama TEMPLATE: the Jinja template is rendered by llama-cpp-python's own formatter on conversations
whose contents are markers; the text between the markers is the literal part of each turn (:class:`Turns`),
which becomes a Go template over ``.System`` and ``.Messages``. The BOS text is left out of it only where
the GGUF says the runtime adds the BOS (``tokenizer.ggml.add_bos_token``: Ollama and llama.cpp then add it;
SmolLM2's ``<|im_start|>`` is its BOS text and is not added). Before a TEMPLATE is written,
:func:`check_turns` renders other conversations (several turns, with and without a system prompt) both
ways and refuses a TEMPLATE that would prompt the model with other text than the GGUF's own template.
Stops: the EOS and the next turn's marker.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass
from pathlib import Path

from runner.llamacpp.stdcxx import share_libstdcxx

_SYSTEM, _USER1, _REPLY, _USER2 = "\x00SYSTEM\x00", "\x00USER1\x00", "\x00REPLY\x00", "\x00USER2\x00"
# Ollama's num_ctx: the base model's context length, at most this (the KV cache of a 32k context costs an
# 8B model 4 GiB on a laptop) unless training used longer rows. SmolLM2: 8192.
NUM_CTX_CAP = 8192


class TemplateError(ValueError):
    """The GGUF does not say how to talk to it (no chat template, or not the job's system prompt)."""


class NoOllamaTemplate(ValueError):
    """The chat template cannot be written as an Ollama TEMPLATE that renders it exactly."""


@dataclass(frozen=True)
class Turns:
    """The literal text around each part of a conversation, as the chat template writes it."""

    head: str  # before the first user message, without a system prompt
    system_head: str | None  # before the system prompt (None: the template has no system role)
    system_tail: str | None  # between the system prompt and the first user message
    user_tail: str  # after a user message that an answer follows
    prompt_tail: str  # after the last user message: the generation prompt
    reply_tail: str  # after an answer, up to the next user message

    def prompt(self, system: str, messages: list[dict[str, str]]) -> str:
        """What the TEMPLATE of :func:`go_template` writes for Ollama's ``.System`` and ``.Messages``."""
        parts = [
            f"{self.system_head}{system}{self.system_tail}"
            if system and self.system_head is not None
            else self.head
        ]
        for i, m in enumerate(messages):
            if m["role"] == "user":
                parts += [m["content"], self.prompt_tail if i == len(messages) - 1 else self.user_tail]
            elif m["role"] == "assistant":
                parts += [m["content"], self.reply_tail]
        return "".join(parts)


@dataclass(frozen=True)
class GgufChat:
    """How to talk to a GGUF, as its metadata says."""

    template: str  # tokenizer.chat_template
    bos: str
    eos: str
    add_bos: bool = False  # tokenizer.ggml.add_bos_token: the runtime adds the BOS itself
    context_length: int | None = None  # <arch>.context_length: the base model's
    system: str | None = None  # the system prompt the template writes when a conversation has none

    def num_ctx(self, trained: int) -> int:
        """Ollama's ``num_ctx``: the base model's context, capped (:data:`NUM_CTX_CAP`), never below ``trained``."""
        return min(self.context_length or trained, max(NUM_CTX_CAP, trained))


def read_gguf_chat(path: Path, system: str | None = None) -> GgufChat:
    """The GGUF's chat metadata (the vocabulary is read, not the weights).

    ``system``: the job's system prompt, which the embedded template must write by default (else
    :class:`TemplateError`: the file would be run without it).
    """
    share_libstdcxx()  # before llama.cpp's libraries (runner.llamacpp.stdcxx says why)
    from llama_cpp import Llama

    llm = Llama(model_path=str(path), vocab_only=True, verbose=False)
    try:
        meta = llm.metadata
        template = meta.get("tokenizer.chat_template")
        if not template:
            raise TemplateError(f"{path.name} has no embedded chat template (tokenizer.chat_template)")
        text = llm._model.token_get_text
        context = meta.get(f"{meta.get('general.architecture')}.context_length")
        chat = GgufChat(
            template,
            text(llm.token_bos()),
            text(llm.token_eos()),
            meta.get("tokenizer.ggml.add_bos_token") == "true",
            int(context) if context else None,
            system,
        )
    finally:
        llm.close()
    if system and not writes_system(chat, system):
        raise TemplateError(f"the chat template in {path.name} does not write the job's system prompt")
    return chat


def writes_system(chat: GgufChat, system: str) -> bool:
    """Whether the template prompts a conversation without a system message as one with ``system``."""
    question = {"role": "user", "content": "Hi"}
    return render_chat(chat, [question]) == render_chat(
        chat, [{"role": "system", "content": system}, question]
    )


def render_chat(chat: GgufChat, messages: list[dict[str, str]]) -> str:
    """The prompt llama-cpp-python builds for ``messages`` (with the generation prompt)."""
    share_libstdcxx()
    from llama_cpp.llama_chat_format import Jinja2ChatFormatter

    return Jinja2ChatFormatter(chat.template, chat.eos, chat.bos)(messages=messages).prompt  # type: ignore[arg-type]


def runtime_text(chat: GgufChat, messages: list[dict[str, str]]) -> str:
    """The rendered prompt as llama.cpp and Ollama tokenize it: without the BOS text they add themselves."""
    text = render_chat(chat, messages)
    return text.removeprefix(chat.bos) if chat.add_bos and chat.bos else text


def derive_turns(chat: GgufChat) -> Turns:
    """Split marker conversations rendered by the template into the literal text of each turn."""
    talk = [
        {"role": "user", "content": _USER1},
        {"role": "assistant", "content": _REPLY},
        {"role": "user", "content": _USER2},
    ]
    head, user_tail, reply_tail, prompt_tail = _split(runtime_text(chat, talk), [_USER1, _REPLY, _USER2])
    system_head = system_tail = None
    with contextlib.suppress(ValueError):  # the template raises on a system message, or drops it
        system_head, system_tail, _ = _split(
            runtime_text(chat, [{"role": "system", "content": _SYSTEM}, *talk]), [_SYSTEM, _USER1]
        )
    return Turns(head, system_head, system_tail, user_tail, prompt_tail, reply_tail)


def _split(text: str, markers: list[str]) -> list[str]:
    parts = []
    for marker in markers:
        if text.count(marker) != 1:
            raise NoOllamaTemplate(f"the chat template does not write each message once (marker {marker!r})")
        before, text = text.split(marker)
        parts.append(before)
    return [*parts, text]


# Conversations whose prompts the TEMPLATE must reproduce: one turn, several, an empty answer.
_CHECKED = [
    [{"role": "user", "content": "What is the capital of France?"}],
    [
        {"role": "user", "content": "Hi there"},
        {"role": "assistant", "content": "Hello! How can I help?"},
        {"role": "user", "content": "Name a colour."},
        {"role": "assistant", "content": ""},
        {"role": "user", "content": "And another\nin two lines."},
    ],
]


def check_turns(chat: GgufChat, turns: Turns) -> None:
    """Raise :class:`NoOllamaTemplate` unless the TEMPLATE writes what the GGUF's own template does.

    As Ollama runs it: with the Modelfile's SYSTEM (or none) when the request has no system message,
    and with the request's own system message.
    """
    for messages in _CHECKED:
        cases = [(chat.system or "", messages), ("", messages)]
        if turns.system_head is not None:
            cases.append(("You are terse.", [{"role": "system", "content": "You are terse."}, *messages]))
        for system, request in cases:
            expected = runtime_text(chat, request)
            got = turns.prompt(system, messages)
            if got != expected:
                raise NoOllamaTemplate(
                    f"an Ollama TEMPLATE would prompt {got[:120]!r}, the GGUF's template {expected[:120]!r}"
                )


def go_template(turns: Turns) -> str:
    """The Ollama TEMPLATE text (one line: Go's ``{{-`` trimming would eat the template's newlines)."""
    q = _literal
    head = q(turns.head)
    if turns.system_head is not None:
        head = (
            f"{{{{ if .System }}}}{q(turns.system_head)}{{{{ .System }}}}{q(turns.system_tail or '')}"
            f"{{{{ else }}}}{head}{{{{ end }}}}"
        )
    user_tail = q(turns.user_tail)
    if turns.prompt_tail != turns.user_tail:
        user_tail = f"{{{{ if $last }}}}{q(turns.prompt_tail)}{{{{ else }}}}{user_tail}{{{{ end }}}}"
    return (
        f"{head}{{{{ range $i, $_ := .Messages }}}}{{{{ $last := eq (len (slice $.Messages $i)) 1 }}}}"
        f'{{{{ if eq .Role "user" }}}}{{{{ .Content }}}}{user_tail}'
        f'{{{{ else if eq .Role "assistant" }}}}{{{{ .Content }}}}{q(turns.reply_tail)}'
        "{{ end }}{{ end }}"
    )


def _literal(text: str) -> str:
    """Text placed verbatim in a Go template (``{{`` must be written as a string action)."""
    return text.replace("{{", '{{ "{{" }}')


def stop_words(turns: Turns, eos: str) -> list[str]:
    """The EOS and the marker that opens the next user turn (what a runaway answer would write next)."""
    next_turn = turns.reply_tail.removeprefix(eos).strip()
    return [eos] + ([next_turn] if next_turn and next_turn != eos else [])


def modelfile(gguf_name: str, chat: GgufChat, num_ctx: int) -> str:
    """The whole Modelfile for a GGUF next to it; :class:`NoOllamaTemplate` rather than a wrong one."""
    turns = derive_turns(chat)
    check_turns(chat, turns)
    template = go_template(turns)
    if '"""' in template or '"""' in (chat.system or ""):
        raise NoOllamaTemplate(
            'the chat template or the system prompt contains """, which a Modelfile cannot quote'
        )
    system = f'SYSTEM """{chat.system}"""\n\n' if chat.system else ""
    stops = "".join(f"PARAMETER stop {_quoted(s)}\n" for s in stop_words(turns, chat.eos))
    return f'FROM ./{gguf_name}\n\nTEMPLATE """{template}"""\n\n{system}{stops}PARAMETER num_ctx {num_ctx}\n'


def _quoted(text: str) -> str:
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n") + '"'
