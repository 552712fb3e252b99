"""``eval.md``: the fidelity figures as readable markdown (the model card reuses the same sections)."""

from __future__ import annotations

from typing import Any

_SOURCES = (
    ("before", "Before (base model)"),
    ("merged", "After (merged model)"),
    ("gguf", "After (GGUF: {file})"),
)


def render_eval(name: str, fid: dict[str, Any]) -> str:
    """The whole ``eval.md`` of a run."""
    verdict = "all checks passed" if fid["ok"] else "PROBLEMS: " + "; ".join(fid["problems"])
    return f"# Fidelity of {name}\n\n{verdict}\n\n" + fidelity_sections(fid, level=2)


def fidelity_sections(fid: dict[str, Any], level: int) -> str:
    """Eval loss, perplexity, format check and before/after answers, headed at ``level``."""
    h = "#" * level
    parts = [
        f"{h} Eval loss (held-out split)\n\n{_loss_table(fid['eval_loss'])}",
        f"{h} Perplexity of the GGUF files\n\n{_ppl_table(fid['perplexity'])}",
    ]
    if "general_text" in fid:
        parts.append(f"{h} Perplexity on general text\n\n{_general_table(fid['general_text'])}")
    if fid["format"]["checked"]:
        found = fid["format"]["problems"]
        parts.append(
            f"{h} Reasoning format\n\n"
            + (
                "\n".join(f"- {p}" for p in found)
                if found
                else "Every after answer closes its reasoning with `</think>` and stops on EOS."
            )
        )
    parts.append(f"{h} Before and after\n\n{_answers(fid['answers'], level + 1)}")
    return "\n\n".join(parts) + "\n"


def _loss_table(loss: dict[str, Any]) -> str:
    cells = " | ".join("—" if loss[k] is None else f"{loss[k]:.4f}" for k in ("before", "after"))
    return (
        "| before training | after training |\n|---|---|\n| "
        + cells
        + " |"
        + (f"\n\n{loss['note']}" if loss["note"] else "")
    )


def _ppl_table(ppl: dict[str, Any]) -> str:
    if ppl["skipped"]:
        return ppl["skipped"]
    lines = [
        f"Over the completions of {ppl['rows']} held-out rows ({ppl['tokens']} tokens), same token ids for "
        f"every file; limit: +{ppl['max_increase'] * 100:g}% over f16 ({ppl['limit_source']}).",
        "",
        "| file | perplexity | vs f16 |",
        "|---|---|---|",
    ]
    lines += [f"| {f['file']} | {f['ppl']:.4f} | {f['increase']:+.2%} |" for f in ppl["files"]]
    return "\n".join(lines)


def _general_table(general: dict[str, Any]) -> str:
    if general["skipped"]:
        return general["skipped"]
    languages = list(general["tokens"])
    lines = [
        f"Fixed passages shipped with tuneq ({general['source']}), which the job did not train on: what "
        "quantization did to the model itself. Tokens: "
        + ", ".join(f"{lang} {n}" for lang, n in general["tokens"].items())
        + ".",
        "",
        "| file | " + " | ".join(f"{lang} | vs f16" for lang in languages) + " |",
        "|---|" + "---|---|" * len(languages),
    ]
    lines += [
        f"| {f['file']} | "
        + " | ".join(f"{f[lang]:.4f} | {f[lang + '_increase']:+.2%}" for lang in languages)
        + " |"
        for f in general["files"]
    ]
    return "\n".join(lines)


def _answers(answers: dict[str, Any], level: int) -> str:
    if answers["note"] and not answers["rows"]:
        return answers["note"]
    h = "#" * level
    blocks = [
        f"Greedy decoding, at most {answers['max_tokens']} new tokens."
        + (f" {answers['note']}." if answers["note"] else "")
    ]
    for i, row in enumerate(answers["rows"], 1):
        blocks.append(f"{h} Prompt {i}\n\n> {row['prompt']}")
        for key, title in _SOURCES:
            if row[key] is not None:
                answer = row[key]
                blocks.append(
                    f"**{title.format(file=answers['gguf_file'])}** — {answer['completion_tokens']} tokens, "
                    f"finish: {answer['finish_reason']}\n\n```text\n{answer['answer']}\n```"
                )
    return "\n\n".join(blocks)
