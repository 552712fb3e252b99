"""Stage ``ship``: ``ship/``, the folder to hand over as is.

The chosen GGUF files and the GGUF adapter (hard-links), a model card ``README.md``, an Ollama
``Modelfile`` matching the embedded chat template, ``commands.txt`` and ``SHA256SUMS`` (written last).
"""

from __future__ import annotations

import json
import shutil
from typing import Any

from runner.core.secrets import write_redacted
from runner.pipeline.artifacts import record_artifact
from runner.pipeline.context import StageContext, StageFailed
from runner.pipeline.quantize import quant_path
from runner.ship.card import commands, model_card
from runner.ship.files import SUMS, link_or_copy, write_sums
from runner.ship.modelfile import TemplateError, modelfile, read_gguf_chat


def run(ctx: StageContext) -> dict[str, Any]:
    """Build ``ship/`` from the run's files; return its files as artifacts."""
    spec, root = ctx.spec, ctx.run.root
    ship = root / "ship"
    shutil.rmtree(ship, ignore_errors=True)
    ship.mkdir()
    sources = [quant_path(ctx, q) for q in spec.export.gguf]
    lora = ctx.results.get("lora", {}).get("artifact")
    sources += [root / lora["path"]] if lora else []
    for src in sources:
        link_or_copy(src, ship / src.name)
    tested = quant_path(ctx, spec.smoke.gguf).name
    try:
        write_redacted(
            ship / "Modelfile", modelfile(tested, read_gguf_chat(ship / tested), spec.model.max_seq_length)
        )
    except TemplateError as exc:
        raise StageFailed(
            f"cannot write the Ollama Modelfile: {exc}",
            "the GGUF's chat template is unusual; "
            "use template.style = 'r1', 'alpaca' or 'chat' with a standard template",
        ) from None
    command_text = commands(spec, tested, lora and sources[-1].name)
    write_redacted(ship / "commands.txt", command_text)
    fidelity = root / "fidelity.json"
    card = model_card(
        spec,
        [(p.name, p.stat().st_size) for p in sources],
        ctx.results.get("train", {}),
        ctx.results.get("data", {}),
        json.loads(fidelity.read_text()) if fidelity.exists() else None,
        command_text,
    )
    write_redacted(ship / "README.md", card)
    write_sums(ship)
    return {"artifacts": [record_artifact(ctx, p, "ship") for p in sorted(ship.iterdir()) if p.name != SUMS]}
