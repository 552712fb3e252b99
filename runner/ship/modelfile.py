"""An Ollama ``Modelfile`` whose TEMPLATE reproduces the chat template embedded in the GGUF.

The GGUF's Jinja template (``tokenizer.chat_template``) is rendered by llama-cpp-python's own formatter
on conversations whose contents are markers; the text between the markers is the literal part of each
turn, which becomes a Go template over ``.System`` and ``.Messages``. The BOS is left to Ollama, which
adds it as the GGUF's ``tokenizer.ggml.add_bos_token`` says. Stops: the EOS and the next turn's marker.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass
from pathlib import Path

from runner.llamacpp.stdcxx import share_libstdcxx

_SYSTEM, _USER1, _REPLY, _USER2 = "\x00SYSTEM\x00", "\x00USER1\x00", "\x00REPLY\x00", "\x00USER2\x00"


class TemplateError(ValueError):
    """The chat template cannot be expressed as an Ollama template."""


@dataclass(frozen=True)
class Turns:
    """The literal text around each part of a conversation, as the chat template writes it."""

    head: str  # before the first user message, without a system prompt
    system_head: str | None  # before the system prompt (None: the template has no system role)
    system_tail: str | None  # between the system prompt and the first user message
    user_tail: str  # after a user message that an answer follows
    prompt_tail: str  # after the last user message: the generation prompt
    reply_tail: str  # after an answer, up to the next user message


@dataclass(frozen=True)
class GgufChat:
    """What a GGUF's metadata says about chatting with it."""

    template: str
    bos: str
    eos: str


def read_gguf_chat(path: Path) -> GgufChat:
    """The embedded chat template and the BOS/EOS texts (the vocabulary is read, not the weights)."""
    share_libstdcxx()  # before llama.cpp's libraries (runner.llamacpp.stdcxx says why)
    from llama_cpp import Llama

    llm = Llama(model_path=str(path), vocab_only=True, verbose=False)
    try:
        template = llm.metadata.get("tokenizer.chat_template")
        if not template:
            raise TemplateError(f"{path.name} has no embedded chat template (tokenizer.chat_template)")
        text = llm._model.token_get_text
        return GgufChat(template, text(llm.token_bos()), text(llm.token_eos()))
    finally:
        llm.close()


def render_chat(chat: GgufChat, messages: list[dict[str, str]]) -> str:
    """The prompt llama-cpp-python builds for ``messages`` (with the generation prompt)."""
    share_libstdcxx()
    from llama_cpp.llama_chat_format import Jinja2ChatFormatter

    return Jinja2ChatFormatter(chat.template, chat.eos, chat.bos)(messages=messages).prompt  # type: ignore[arg-type]


def derive_turns(chat: GgufChat) -> Turns:
    """Split marker conversations rendered by the template into the literal text of each turn."""
    talk = [
        {"role": "user", "content": _USER1},
        {"role": "assistant", "content": _REPLY},
        {"role": "user", "content": _USER2},
    ]
    head, user_tail, reply_tail, prompt_tail = _split(render_chat(chat, talk), [_USER1, _REPLY, _USER2])
    system_head = system_tail = None
    with contextlib.suppress(ValueError):  # the template raises on a system message, or drops it
        system_head, system_tail, _ = _split(
            render_chat(chat, [{"role": "system", "content": _SYSTEM}, *talk]), [_SYSTEM, _USER1]
        )
    bos = chat.bos or None
    return Turns(
        head.removeprefix(bos or ""),
        system_head and system_head.removeprefix(bos or ""),
        system_tail,
        user_tail,
        prompt_tail,
        reply_tail,
    )


def _split(text: str, markers: list[str]) -> list[str]:
    parts = []
    for marker in markers:
        if text.count(marker) != 1:
            raise TemplateError(f"the chat template does not write each message once (marker {marker!r})")
        before, text = text.split(marker)
        parts.append(before)
    return [*parts, text]


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
    """The whole Modelfile for a GGUF next to it."""
    turns = derive_turns(chat)
    template = go_template(turns)
    if '"""' in template:
        raise TemplateError('the chat template contains """, which a Modelfile cannot quote')
    stops = "".join(f"PARAMETER stop {_quoted(s)}\n" for s in stop_words(turns, chat.eos))
    return f'FROM ./{gguf_name}\n\nTEMPLATE """{template}"""\n\n{stops}PARAMETER num_ctx {num_ctx}\n'


def _quoted(text: str) -> str:
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n") + '"'
