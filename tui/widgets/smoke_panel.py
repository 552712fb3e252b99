"""The smoke test's answers from smoke.json: each prompt, its answer (and the base model's, when the job
has one), and the checks that failed."""

from __future__ import annotations

from typing import Any

from rich.console import Group, RenderableType
from rich.text import Text
from textual.widgets import Static


class SmokePanel(Static):
    """Renders ``smoke.json``."""

    def show(self, smoke: dict[str, Any] | None) -> None:
        """Render the answers, or say that there are none yet."""
        if not smoke:
            self.update(Text("no smoke test results yet (the smoke stage runs last)", style="dim"))
            return
        parts: list[RenderableType] = [
            Text.assemble(
                ("PASSED" if smoke.get("ok") else "FAILED", "bold green" if smoke.get("ok") else "bold red"),
                f"  {smoke.get('gguf', '')}",
                ("" if smoke.get("chat_template_embedded", True) else "  (no chat template embedded)", "red"),
            )
        ]
        for result in smoke.get("results") or []:
            parts.append(_result(result))
        self.update(Group(*parts))


def _result(result: dict[str, Any]) -> Text:
    ok = bool(result.get("ok"))
    text = Text("\n")
    text.append("✓ " if ok else "✗ ", style="green" if ok else "bold red")
    text.append(str(result.get("prompt", "")), style="bold")
    if "before" in result:
        text.append("\nbefore: ", style="dim").append(str(result["before"]))
    text.append("\nanswer: " if "before" not in result else "\nafter:  ", style="dim")
    text.append(str(result.get("answer", "")))
    if result.get("note"):  # why an answer of generated tokens reads as nothing
        text.append(f"\n  ({result['note']})", style="dim")
    for check in result.get("checks") or []:
        if not check.get("ok"):
            text.append(f"\n  failed: {check.get('name')} ({check.get('detail')})", style="red")
    return text
