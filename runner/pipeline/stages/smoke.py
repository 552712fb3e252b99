"""Stage ``smoke``: load the quantized GGUF with llama-cpp-python and check real answers.

The file is asked the way its users run it: through the chat template embedded in the GGUF (the Jinja
path of ``llama-server --jinja`` and ``llama-cli``), with no system message in the request, so the
template writes the job's ``template.system`` itself, as it does for them. That the embedded template
writes it is checked too (an explicit system message renders the same prompt). With a system prompt the
prompts are also asked without it (the model's template before tuneq added the default) and reported as
``without_system_prompt``: a model that only works with its system prompt passes, since the shipped files
carry it.

Checks the failure modes users hit after export: no chat template embedded, answers that never stop
(wrong EOS), template tokens leaking into the text, and the job's own expectations (``must_contain``,
``regex``). Greedy decoding (temperature 0) so results repeat. Any failed check (with the system
prompt) fails the job.

Generation is bounded here, not only by llama-cpp-python's ``max_tokens``: its completion loop (0.3.36)
skips that check while a UTF-8 character is incomplete, so byte-fallback output (CJK text from a
half-trained model) ran on until the context was full and ``llama_decode`` failed. :class:`TokenBudget`
forces the end-of-sequence token once ``max_tokens`` are out or the context is nearly full, and such an
answer is reported as one that did not stop.
"""

from __future__ import annotations

import os
import re
import time
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt

from runner.core.events import Metric
from runner.core.secrets import write_redacted_json
from runner.dataset.templates import without_default_system
from runner.pipeline.context import StageContext, StageFailed
from runner.pipeline.isolate import call_in_child
from runner.pipeline.progress import counted_progress
from runner.ship.modelfile import GgufChat, writes_system
from runner.spec.model import SmokePrompt

LEAK_MARKERS = (
    "<｜User｜>",
    "<｜Assistant｜>",
    "<｜end▁of▁sentence｜>",
    "<｜begin▁of▁sentence｜>",
    "<|im_start|>",
    "<|im_end|>",
    "<|start_header_id|>",
    "<|eot_id|>",
    "<|endoftext|>",
    "### Instruction:",
)


class TokenBudget:
    """A llama-cpp-python logits processor that ends an answer after ``max_tokens`` or at a full context.

    It is called before each token is sampled, with the tokens evaluated so far; past the budget it leaves
    only the end-of-sequence token possible, and ``exhausted`` records that the answer did not stop.
    """

    def __init__(self, max_tokens: int, n_ctx: int, eos: int) -> None:
        self.max_tokens, self.n_ctx, self.eos = max_tokens, n_ctx, eos
        self.prompt_tokens: int | None = None
        self.exhausted = False

    def __call__(
        self, input_ids: npt.NDArray[np.intc], scores: npt.NDArray[np.single]
    ) -> npt.NDArray[np.single]:
        """The scores unchanged, or only EOS possible once the budget is spent."""
        if self.prompt_tokens is None:
            self.prompt_tokens = len(input_ids)
        generated = len(input_ids) - self.prompt_tokens
        if generated < self.max_tokens and len(input_ids) < self.n_ctx - 1:
            return scores
        self.exhausted = True
        only_eos = np.full_like(scores, -np.inf)
        only_eos[self.eos] = 0.0
        return only_eos


@dataclass
class SmokeAnswers:
    """What the child process found: the embedded template, and the answers with and without the prompt."""

    template: str | None
    system_embedded: bool | None  # None: the job has no system prompt
    results: list[dict[str, Any]]
    without_system: list[dict[str, Any]] | None


def answer_with_gguf(
    path: str, n_ctx: int, prompts: list[SmokePrompt], max_tokens: int, system: str | None
) -> SmokeAnswers:
    """Load the GGUF (all layers on the GPU when there is one) and answer every prompt."""
    from llama_cpp import Llama
    from llama_cpp.llama_chat_format import Jinja2ChatFormatter

    llm = Llama(
        model_path=path, n_ctx=n_ctx, n_threads=os.cpu_count() or 1, n_gpu_layers=-1, seed=0, verbose=False
    )
    template = llm.metadata.get("tokenizer.chat_template")
    results = [_ask(llm, p, max_tokens, n_ctx) for p in prompts]
    if not (template and system):
        return SmokeAnswers(template, None, results, None)
    text = llm._model.token_get_text
    bos, eos = text(llm.token_bos()), text(llm.token_eos())
    embedded = writes_system(GgufChat(template, bos, eos), system)
    llm.chat_handler = Jinja2ChatFormatter(
        without_default_system(template, system), eos, bos, stop_token_ids=[llm.token_eos()]
    ).to_chat_handler()
    return SmokeAnswers(template, embedded, results, [_ask(llm, p, max_tokens, n_ctx) for p in prompts])


def run(ctx: StageContext) -> dict[str, Any]:
    """Answer each ``[[smoke.prompts]]`` and write ``smoke.json``; raise when a check fails."""
    path = ctx.gguf_file(ctx.spec.smoke.gguf)
    n_ctx = ctx.spec.smoke_context
    system = ctx.spec.template.system
    prompts = list(ctx.spec.smoke.prompts)
    with counted_progress(ctx, len(prompts) * (2 if system else 1), "answers") as advance:
        found: SmokeAnswers = call_in_child(
            "the smoke test", answer_with_gguf, str(path), n_ctx, prompts, ctx.spec.smoke.max_tokens, system
        )
        advance(len(found.results) + len(found.without_system or []))
    template, results = found.template, found.results
    report = {
        "gguf": str(path.relative_to(ctx.run.root)),
        "chat_template_embedded": bool(template),
        "system_prompt": system,
        "system_prompt_embedded": found.system_embedded,
        "results": results,
        "without_system_prompt": found.without_system,
        "ok": bool(template) and found.system_embedded is not False and all(r["ok"] for r in results),
    }
    write_redacted_json(ctx.run.smoke, report)
    for r in results:
        ctx.emit(
            Metric(
                values={
                    "prompt": r["prompt"][:80],
                    "ok": r["ok"],
                    "completion_tokens": r["completion_tokens"],
                    "tokens_per_s": r["tokens_per_s"],
                }
            )
        )
    if not template:
        raise StageFailed(
            "the GGUF has no chat template (tokenizer.chat_template)",
            "the merged tokenizer lost its template; check template.style",
        )
    if found.system_embedded is False:
        raise StageFailed(
            "the GGUF's chat template does not write the job's system prompt (template.system)",
            "the merged tokenizer lost the template tuneq wrote; re-run the job from the train stage",
        )
    if found.without_system is not None:
        passed = sum(r["ok"] for r in found.without_system)
        ctx.log(
            f"without the system prompt {passed} of {len(found.without_system)} prompts pass the checks "
            "(not required: the shipped files carry the system prompt)"
        )
    failed = [
        f"'{r['prompt'][:40]}': {c['name']} ({c['detail']}" + (f"; {r['note']})" if "note" in r else ")")
        for r in results
        for c in r["checks"]
        if not c["ok"]
    ]
    if failed:
        raise StageFailed(
            "smoke test failed: " + "; ".join(failed[:5]),
            "see smoke.json for the answers; train longer or fix the template/EOS",
        )
    return {"ok": True, "prompts": len(results)}


def generate(llm: Any, messages: list[dict[str, str]], max_tokens: int, n_ctx: int) -> dict[str, Any]:
    """One greedy answer through the GGUF's embedded chat template, bounded by :class:`TokenBudget`: the
    smoke test's way of asking, also the TUI's chat (``python -m runner.pipeline.chat``). ``RuntimeError``
    when llama.cpp fails to decode."""
    from llama_cpp import LogitsProcessorList

    budget = TokenBudget(max_tokens, n_ctx, llm.token_eos())
    started = time.monotonic()
    out = llm.create_chat_completion(
        messages=messages,
        temperature=0.0,
        max_tokens=max_tokens,
        seed=0,
        logits_processor=LogitsProcessorList([budget]),
    )
    seconds = time.monotonic() - started
    choice = out["choices"][0]
    tokens = out["usage"]["completion_tokens"]
    return {
        "answer": choice["message"]["content"] or "",
        "finish_reason": "length" if budget.exhausted else choice["finish_reason"],
        "completion_tokens": tokens,
        "tokens_per_s": round(tokens / seconds, 1) if seconds > 0 else None,
    }


def _ask(llm: Any, prompt: SmokePrompt, max_tokens: int, n_ctx: int) -> dict[str, Any]:
    try:
        found = generate(llm, [{"role": "user", "content": prompt.prompt}], max_tokens, n_ctx)
    except RuntimeError as exc:  # llama_decode failing: a failed check, not a crashed stage
        check = {"name": "generates an answer", "ok": False, "detail": str(exc)}
        return {
            "prompt": prompt.prompt,
            "answer": "",
            "finish_reason": "error",
            "completion_tokens": 0,
            "tokens_per_s": None,
            "checks": [check],
            "ok": False,
        }
    answer, tokens, finish_reason = found["answer"], found["completion_tokens"], found["finish_reason"]
    checks = evaluate(prompt, answer, finish_reason)
    note = unreadable_note(answer, tokens)
    return {
        "prompt": prompt.prompt,
        "answer": answer,
        **({"note": note} if note else {}),
        "finish_reason": finish_reason,
        "completion_tokens": tokens,
        "tokens_per_s": found["tokens_per_s"],
        "checks": checks,
        "ok": all(c["ok"] for c in checks),
    }


def evaluate(prompt: SmokePrompt, answer: str, finish_reason: str | None) -> list[dict[str, Any]]:
    """The checks for one answer: stops on EOS, no leaked template tokens, the job's expectations. Each
    check's ``detail`` says what was found, in the words of its outcome."""
    checks = []
    if prompt.must_stop:
        stopped = finish_reason == "stop"
        checks.append(
            _check(
                "stops before max_tokens",
                stopped,
                "stopped with the end-of-sequence token",
                f"did not stop: no end-of-sequence token within max_tokens ({finish_reason=})",
            )
        )
    leaked = [m for m in LEAK_MARKERS if m in answer]
    checks.append(_check("no template tokens in the answer", not leaked, "none found", f"found {leaked}"))
    for needle in prompt.must_contain:
        checks.append(_check(f"contains {needle!r}", needle in answer, "found", "missing"))
    if prompt.regex:
        found = re.search(prompt.regex, answer) is not None
        checks.append(_check(f"matches /{prompt.regex}/", found, "matched", "no match"))
    return checks


def _check(name: str, ok: bool, passed: str, failed: str) -> dict[str, Any]:
    return {"name": name, "ok": ok, "detail": passed if ok else failed}


def unreadable_note(answer: str, completion_tokens: int) -> str | None:
    """Why an answer of generated tokens reads as nothing: its tokens were byte pieces that form no UTF-8
    character (llama-cpp-python drops those bytes), so it shows as ``''``."""
    if answer.strip() or completion_tokens == 0:
        return None
    return (
        f"{completion_tokens} token(s) generated but no readable text: they are byte pieces that form no "
        "UTF-8 character (dropped in decoding), so the answer shows as ''"
    )
