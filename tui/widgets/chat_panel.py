"""Ask the tested GGUF over SSH before shipping it: the smoke stage's way of asking, one conversation."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from rich.text import Text
from textual import on, work
from textual.app import ComposeResult
from textual.containers import Vertical, VerticalScroll
from textual.message import Message
from textual.widgets import Input, Static

from tui.chat import ChatSession


class ChatPanel(Vertical):
    """A transcript and a prompt box; answers come from a child process holding the model."""

    @dataclass
    class Answered(Message):
        """The model's reply to the last question."""

        reply: dict[str, Any]

    def __init__(self, *, id: str | None = None) -> None:
        super().__init__(id=id)
        self.session: ChatSession | None = None
        self.messages: list[dict[str, str]] = []
        self.transcript = Text()
        self.waiting = False  # a question is with the model

    def compose(self) -> ComposeResult:
        with VerticalScroll(id="chat-scroll"):
            yield Static(
                Text("no tested GGUF yet: the chat opens once the smoke stage has passed", style="dim"),
                id="chat-transcript",
            )
        yield Input(
            placeholder="ask the tested model (enter sends; it answers as the smoke test did)",
            id="chat-input",
        )

    def set_model(self, gguf: Path | None, n_ctx: int, max_tokens: int) -> None:
        """The GGUF to talk to (a new one starts a new conversation)."""
        if gguf is None or (self.session is not None and self.session.gguf == gguf):
            return
        self.close()
        self.session = ChatSession(gguf, n_ctx, max_tokens)
        self.messages, self.transcript = (
            [],
            Text(f"{gguf.name}: greedy, at most {max_tokens} tokens an answer\n", style="dim"),
        )
        self._show()

    def close(self) -> None:
        """Stop the model's process."""
        if self.session is not None:
            self.session.close()

    def on_unmount(self) -> None:
        self.close()  # the job screen closed: no model left holding memory

    @on(Input.Submitted, "#chat-input")
    def _asked(self, event: Input.Submitted) -> None:
        event.stop()
        question = event.value.strip()
        if not question or self.session is None or self.waiting:
            return
        event.input.value = ""
        self.messages.append({"role": "user", "content": question})
        self.transcript.append("you: ", style="bold").append(question + "\n")
        self.waiting = True
        self._show()
        self._answer(list(self.messages))

    @work(thread=True, exclusive=True, group="chat")
    def _answer(self, messages: list[dict[str, str]]) -> None:
        assert self.session is not None
        self.post_message(self.Answered(self.session.ask(messages)))

    @on(Answered)
    def _answered(self, event: Answered) -> None:
        reply, self.waiting = event.reply, False
        if "error" in reply:
            self.messages.pop()
            self.transcript.append(f"error: {reply['error']}\n", style="bold red")
        else:
            self.messages.append({"role": "assistant", "content": reply["answer"]})
            self.transcript.append("model: ", style="bold green").append(reply["answer"] + "\n")
            stopped = (
                "stopped"
                if reply["finish_reason"] == "stop"
                else f"cut at {reply['completion_tokens']} tokens"
            )
            self.transcript.append(f"  {reply['completion_tokens']} tokens, {stopped}\n", style="dim")
        self._show()

    def _show(self) -> None:
        shown = self.transcript.copy()
        if self.waiting:
            shown.append("model: … (the first answer loads the model)\n", style="dim")
        self.query_one("#chat-transcript", Static).update(shown)
        self.query_one("#chat-scroll", VerticalScroll).scroll_end(animate=False)
