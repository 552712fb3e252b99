"""Stage ``fidelity``: did training help, and did quantization keep it? → ``fidelity.json`` and ``eval.md``.

- the ``[smoke]`` prompts answered before (base model) and after (merged model; the smoke test's GGUF);
- the trainer's eval loss before and after training;
- perplexity of the f16 GGUF and each quant over the held-out completions, and each quant's increase,
  checked against ``export.max_ppl_increase`` (failing the job, or warning with ``on_fidelity = "warn"``);
- the same files' perplexity on general text no job trains on (``perplexity.GENERAL_TEXT``: English and
  Chinese passages), reported beside it: a fine-tune on repetitive data scores near 1 on its own answers
  whatever the quant, while general text still shows what quantization did to the model;
- for ``r1`` jobs, the after answers close their reasoning (``</think>``) and stop on EOS.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from runner.core.events import Metric
from runner.core.secrets import write_redacted, write_redacted_json
from runner.dataset.templates import chat_template_for
from runner.models.resolve import load_tokenizer, local_model_dir
from runner.pipeline.answers import answer_with_transformers
from runner.pipeline.artifacts import record_artifact
from runner.pipeline.context import StageContext, StageFailed
from runner.pipeline.isolate import ChildCrashed, call_in_child
from runner.pipeline.perplexity import (
    GENERAL_TEXT,
    Perplexity,
    Row,
    general_text_rows,
    load_rows,
    perplexities,
    perplexity_on_cpu,
)
from runner.pipeline.progress import counted_progress
from runner.ship.evalmd import render_eval
from runner.spec.model import ExportSpec

BIG_MODEL_PARAMS = 1_000_000_000


def run(ctx: StageContext) -> dict[str, Any]:
    """Measure, write ``fidelity.json`` and ``eval.md``; raise (or warn) when a check fails."""
    export = ctx.spec.export
    if not export.fidelity:
        return {"skipped": "export.fidelity = false"}
    fid: dict[str, Any] = {
        "answers": _answers(ctx),
        "eval_loss": eval_loss_summary(ctx.results.get("train", {})),
    }
    fid["perplexity"], fid["general_text"] = _perplexities(ctx)
    fid["format"] = _format_check(ctx, fid["answers"])
    problems = limit_problems(fid["perplexity"]) + fid["format"]["problems"]
    if error := fid["perplexity"].get("error"):
        problems.insert(0, f"perplexity not measured: {error}")
    fid.update(problems=problems, on_fidelity=export.on_fidelity, ok=not problems)
    write_redacted_json(ctx.run.fidelity, fid)
    write_redacted(ctx.run.eval_md, render_eval(ctx.spec.name, fid))
    artifacts = [record_artifact(ctx, path, "fidelity") for path in (ctx.run.fidelity, ctx.run.eval_md)]
    if fid["eval_loss"]["note"]:
        ctx.log(fid["eval_loss"]["note"])
    if problems and export.on_fidelity == "fail":
        raise StageFailed(
            "fidelity check failed: " + "; ".join(problems),
            "see eval.md; train differently, pick a larger quant, or set export.max_ppl_increase "
            '/ export.on_fidelity = "warn"',
        )
    for problem in problems:
        ctx.log(f'warning (export.on_fidelity = "warn"): {problem}')
    return {"ok": not problems, "problems": problems, "artifacts": artifacts}


def _answers(ctx: StageContext) -> dict[str, Any]:
    spec = ctx.spec
    prompts = [p.prompt for p in spec.smoke.prompts]
    smoke = json.loads(ctx.run.smoke.read_text()) if ctx.run.smoke.exists() else {"results": [], "gguf": None}
    base = local_model_dir(spec.model.base, spec.model.revision)
    before: list[dict[str, Any]] | None = None
    if prompts and base is not None:
        template = chat_template_for(
            spec.template, load_tokenizer(spec.model.base, spec.model.revision, spec.model.trust_remote_code)
        )
        before = answer_with_transformers(
            base, prompts, spec.smoke.max_tokens, template, spec.model.trust_remote_code
        )
    merged = (
        answer_with_transformers(
            ctx.run.merged, prompts, spec.smoke.max_tokens, trust_remote_code=spec.model.trust_remote_code
        )
        if prompts
        else []
    )
    gguf = {
        r["prompt"]: {k: r[k] for k in ("answer", "finish_reason", "completion_tokens")}
        for r in smoke["results"]
    }
    rows = [
        {"prompt": p, "before": before[i] if before else None, "merged": merged[i], "gguf": gguf.get(p)}
        for i, p in enumerate(prompts)
    ]
    note = None if prompts else "the job has no [[smoke.prompts]]: nothing to compare"
    if prompts and base is None:
        note = f"the base model {spec.model.base} is not on disk: no before answers"
    return {"gguf_file": smoke["gguf"], "max_tokens": spec.smoke.max_tokens, "rows": rows, "note": note}


def eval_loss_summary(train: dict[str, Any]) -> dict[str, Any]:
    """Eval loss before and after training, and a note when it did not go down (or was not measured)."""
    before, after = train.get("eval_loss_before"), train.get("eval_loss")
    improved, note = None, None
    if after is None:
        note = "no eval loss: the job has no eval split (data.eval_split)"
    elif before is None:
        note = "no eval loss before training: the run resumed from a checkpoint"
    else:
        improved = after < before
        note = (
            None
            if improved
            else f"eval loss did not improve: {after:.4f} after vs {before:.4f} before training"
        )
    return {"before": before, "after": after, "improved": improved, "note": note}


def _perplexities(ctx: StageContext) -> tuple[dict[str, Any], dict[str, Any]]:
    """The held-out table (with the limit) and the general-text table, each file loaded once."""
    from transformers import AutoTokenizer

    export = ctx.spec.export
    eval_dir = ctx.run.data_eval
    sets = general_text_rows(
        AutoTokenizer.from_pretrained(str(ctx.run.merged), trust_remote_code=ctx.spec.model.trust_remote_code)
    )
    languages = list(sets)
    if eval_dir.exists():
        sets["eval"] = load_rows(eval_dir, export.ppl_rows)
    quants = ["f16", *(q for q in export.gguf if q != "f16")]
    try:
        measured = {}
        with counted_progress(ctx, len(quants), "files scored") as advance:  # minutes each on a big model
            for quant in quants:
                measured[quant] = _score(ctx, ctx.gguf_file(quant), sets, quant)
                advance(1)
    except ChildCrashed as exc:
        if export.on_fidelity == "fail":
            raise
        skipped = {"skipped": f"not measured: {exc.cause}", "files": [], "error": exc.cause}
        return skipped, {"skipped": skipped["skipped"], "files": []}
    general: dict[str, Any] = {
        "source": str(GENERAL_TEXT.relative_to(GENERAL_TEXT.parents[2])),
        "tokens": {lang: measured["f16"][lang].tokens for lang in languages},
        "files": [
            {
                "quant": q,
                "file": str(ctx.gguf_file(q).relative_to(ctx.run.root)),
                **{lang: m[lang].ppl for lang in languages},
                **{f"{lang}_increase": m[lang].ppl / measured["f16"][lang].ppl - 1 for lang in languages},
            }
            for q, m in measured.items()
        ],
        "skipped": None,
    }
    if "eval" not in sets:
        return {
            "skipped": "no eval split (set data.eval_split): perplexity not measured",
            "files": [],
        }, general
    limit, why = ppl_limit(export, ctx.gguf_file("f16").stat().st_size // 2)  # f16: two bytes a weight
    files: list[dict[str, Any]] = [
        {
            "quant": q,
            "file": str(ctx.gguf_file(q).relative_to(ctx.run.root)),
            "ppl": m["eval"].ppl,
            "tokens": m["eval"].tokens,
            "increase": m["eval"].ppl / measured["f16"]["eval"].ppl - 1,
        }
        for q, m in measured.items()
    ]
    for f, g in zip(files, general["files"], strict=True):
        general_metrics = {f"ppl_{lang}": round(g[lang], 4) for lang in languages}
        ctx.emit(
            Metric(
                values={
                    "quant": f["quant"],
                    "ppl": round(f["ppl"], 4),
                    "ppl_increase": round(f["increase"], 4),
                    **general_metrics,
                }
            )
        )
    table = {
        "rows": len(sets["eval"]),
        "tokens": files[0]["tokens"],
        "files": files,
        "max_increase": limit,
        "limit_source": why,
        "skipped": None,
    }
    return table, general


def ppl_limit(export: ExportSpec, params: int) -> tuple[float, str]:
    """The allowed relative perplexity increase of a quant over f16, and where the number comes from."""
    if export.max_ppl_increase is not None:
        return export.max_ppl_increase, "export.max_ppl_increase"
    if params >= BIG_MODEL_PARAMS:
        return 0.05, "default for models of 1B parameters or more"
    return 0.10, "default for models under 1B parameters, which lose more to quantization"


def limit_problems(ppl: dict[str, Any]) -> list[str]:
    """One line per quant whose perplexity rose more than the limit allows."""
    if ppl["skipped"]:
        return []
    f16, limit = ppl["files"][0]["ppl"], ppl["max_increase"]
    return [
        f"{f['quant']} perplexity {f['ppl']:.4f} is {f['increase']:+.2%} over f16 {f16:.4f} "
        f"(limit +{limit * 100:g}%, {ppl['limit_source']})"
        for f in ppl["files"][1:]
        if f["increase"] > limit
    ]


def _format_check(ctx: StageContext, answers: dict[str, Any]) -> dict[str, Any]:
    """``r1`` jobs: every after answer contains ``</think>`` and ends on EOS before max_tokens."""
    if ctx.spec.template.style != "r1":
        return {"checked": False, "problems": []}
    problems = []
    for row in answers["rows"]:
        for source in ("merged", "gguf"):
            answer = row[source]
            if answer is None:
                continue
            if "</think>" not in answer["answer"]:
                problems.append(f"{source} answer to '{row['prompt'][:40]}' has no </think>")
            if answer["finish_reason"] != "stop":
                problems.append(f"{source} answer to '{row['prompt'][:40]}' hit max_tokens without EOS")
    return {"checked": True, "problems": problems}


def _score(ctx: StageContext, path: Path, sets: dict[str, list[Row]], quant: str) -> dict[str, Perplexity]:
    """Perplexities of one file, in a child process, so that a crash inside llama.cpp fails only this call.

    A crash is retried once with CUDA hidden, on the CPU (a GPU-side failure, such as a driver fault, then
    still gets a measurement). The SIGSEGV seen on the H100 was a libstdc++ clash, fixed by runner/llamacpp/stdcxx.py.
    """
    try:
        return call_in_child(f"perplexity of {quant}", perplexities, path, sets)
    except ChildCrashed as exc:
        ctx.log(f"{exc.cause}; scoring {quant} on the CPU instead")
        return call_in_child(f"perplexity of {quant} on the CPU", perplexity_on_cpu, path, sets)
