"""Stage ``ship``: ``ship/``, the folder to hand over as is.

The chosen GGUF files and the GGUF adapter (hard-links), a model card ``README.md``, an Ollama
``Modelfile`` matching the embedded chat template, ``commands.txt`` and ``SHA256SUMS`` (written last).
All of them say how to talk to the model as the tested GGUF's metadata does (runner/ship/modelfile.py):
its template, the job's system prompt, its context. A chat template that no Ollama TEMPLATE renders
exactly gets no Modelfile, and the card says why, rather than a wrong one.
"""

from __future__ import annotations

import json
import shutil
from typing import Any

from runner.core.secrets import write_redacted
from runner.pipeline.artifacts import record_artifact
from runner.pipeline.context import StageContext, StageFailed
from runner.pipeline.progress import counted_progress
from runner.ship.card import commands, model_card, prompt_section
from runner.ship.files import link_or_copy, write_sums
from runner.ship.modelfile import NoOllamaTemplate, TemplateError, modelfile, read_gguf_chat
from runner.ship.plot import write_loss_png


def run(ctx: StageContext) -> dict[str, Any]:
    """Build ``ship/`` from the run's files; return its files as artifacts."""
    spec, root = ctx.spec, ctx.run.root
    ship = ctx.run.ship
    shutil.rmtree(ship, ignore_errors=True)
    ship.mkdir()
    sources = [ctx.gguf_file(q) for q in spec.export.gguf]
    lora = ctx.results.get("lora", {}).get("artifact")
    sources += [root / lora["path"]] if lora else []
    with counted_progress(ctx, len(sources), "files") as advance:  # a copy of GBs where links cannot be
        for src in sources:
            link_or_copy(src, ship / src.name)
            advance(1)
    tested = ctx.gguf_file(spec.smoke.gguf).name
    try:
        chat = read_gguf_chat(ship / tested, spec.template.system)
    except TemplateError as exc:
        raise StageFailed(
            f"the tested GGUF does not say how to talk to it: {exc}",
            "re-run the job from the train stage (it writes the chat template the GGUF carries)",
        ) from None
    num_ctx = chat.num_ctx(spec.model.max_seq_length)
    no_modelfile = None
    try:
        write_redacted(ctx.run.ship_modelfile, modelfile(tested, chat, num_ctx))
    except NoOllamaTemplate as exc:
        no_modelfile = str(exc)
        ctx.log(f"no Ollama Modelfile: {no_modelfile} (the model card says so)")
    command_text = commands(spec, tested, lora and sources[-1].name, with_modelfile=no_modelfile is None)
    write_redacted(ctx.run.ship_commands, command_text)
    fidelity, smoke = ctx.run.fidelity, ctx.run.smoke
    train = ctx.results.get("train", {})
    card = model_card(
        spec,
        [(p.name, p.stat().st_size) for p in sources],
        train,
        ctx.results.get("data", {}),
        json.loads(fidelity.read_text()) if fidelity.exists() else None,
        command_text,
        prompt_section(
            spec, chat, num_ctx, no_modelfile, json.loads(smoke.read_text()) if smoke.exists() else None
        ),
        loss_png=write_loss_png(train, ctx.run.ship_loss_plot),
    )
    write_redacted(ctx.run.ship_card, card)
    write_sums(ship)
    shipped = [p for p in sorted(ship.iterdir()) if p != ctx.run.ship_sums]
    return {"artifacts": [record_artifact(ctx, p, "ship") for p in shipped]}
