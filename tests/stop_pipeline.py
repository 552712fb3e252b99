"""The real ``run_pipeline`` over two cheap stand-in stages, for stop tests (through TUNEQ_PIPELINE_CMD).

``train`` marks itself checkpointing as the real one does and steps until a stop signal, then "saves a
checkpoint" and stops; ``lora`` runs a child through ``run_converter`` as the real one runs llama.cpp's
converter. The job's ``description`` picks where to wait: ``wait-in=train`` or ``wait-in=lora``. A stage
writes ``<stage>.ready`` in the run directory once it waits.
"""

import sys
import time
import tomllib
from pathlib import Path
from typing import Any

from runner.core.events import Progress
from runner.pipeline import run
from runner.pipeline.artifacts import run_converter
from runner.pipeline.context import StageContext

CHILD = """
import pathlib, sys, time
pathlib.Path(sys.argv[1]).write_text("ready")
time.sleep(60)
"""


def _waits_in(ctx: StageContext) -> bool:
    words = tomllib.loads(ctx.run.job_toml.read_text()).get("description", "").split()
    return f"wait-in={ctx.stage}" in words


def train(ctx: StageContext) -> dict[str, Any]:
    if not _waits_in(ctx):
        return {}
    step = 0
    with ctx.stop.checkpointing():
        while not ctx.stop.requested:
            step += 1
            ctx.emit(Progress(step=step, max_steps=10_000))
            (ctx.run.root / "train.ready").write_text(str(step))
            time.sleep(0.05)
    (ctx.run.root / "checkpoint").write_text(str(step))
    ctx.stop.raise_if_requested()
    return {"steps": step}


def lora(ctx: StageContext) -> dict[str, Any]:
    if _waits_in(ctx):
        script = ctx.run.root / "child.py"
        script.write_text(CHILD)
        run_converter(ctx, script, [str(ctx.run.root / "lora.ready")], ctx.run.root / "out.gguf")
    return {}


run.STAGES = (run.Stage("train", train, ()), run.Stage("lora", lora, ()))
sys.exit(run.run_pipeline(Path(sys.argv[1])))
