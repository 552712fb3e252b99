"""smoke.json says what each check found in the words of its outcome, and why an answer reads as ''."""

from __future__ import annotations

from runner.pipeline.stages.smoke import evaluate, unreadable_note
from runner.spec.model import SmokePrompt


def test_passed_checks_carry_no_failure_wording() -> None:
    prompt = SmokePrompt(prompt="Capital of France?", must_contain=["Paris"], regex=r"^\{")
    checks = evaluate(prompt, '{"capital": "Paris"}', "stop")
    assert all(c["ok"] for c in checks)
    assert [c["detail"] for c in checks] == [
        "stopped with the end-of-sequence token",
        "none found",
        "found",
        "matched",
    ]
    failed = evaluate(prompt, "Lyon<|im_end|>", "length")
    assert not any(c["ok"] for c in failed)
    assert [c["detail"].split(":")[0] for c in failed] == [
        "did not stop",
        "found ['<|im_end|>']",
        "missing",
        "no match",
    ]


def test_an_answer_of_only_broken_utf8_says_why_it_is_empty() -> None:
    # llama-cpp-python decodes "\xe4\xb8" (half of a CJK character) to nothing
    answer = b"\xe4\xb8".decode("utf-8", errors="ignore")
    note = unreadable_note(answer, 7)
    assert note is not None and note.startswith("7 token(s) generated but no readable text")
    assert "UTF-8" in note and unreadable_note("Paris", 3) is None and unreadable_note("", 0) is None


def test_the_tui_shows_why_an_answer_is_empty() -> None:
    from tui.widgets.smoke_panel import _result

    note = unreadable_note("", 5)
    shown = _result({"prompt": "Hi", "answer": "", "note": note, "ok": False, "checks": []}).plain
    assert f"answer: \n  ({note})" in shown
