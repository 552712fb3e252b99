"""The real ``run_pipeline`` over one cheap stand-in ``train`` stage, for full-disk tests (run as
``python tests/disk_pipeline.py RUN_DIR``).

The stage steps ``steps=N`` times (default: until something fails) under the real checkpoint guards of
:mod:`runner.pipeline.checkpoints`, resuming after the newest intact checkpoint. The job's ``description``
says what each step writes: ``checkpoints`` saves ``checkpoint-<step>/`` as the trainer does (the weights
with safetensors, ``optimizer.pt`` with ``torch.save``, ``trainer_state.json`` last); ``chatty`` makes each
progress event 4 KB long.
"""

import json
import sys
import tomllib
from pathlib import Path
from typing import Any

from runner.core.events import Progress
from runner.pipeline import run
from runner.pipeline.checkpoints import newest_intact, no_partial_checkpoint, step_of
from runner.pipeline.context import StageContext


def train(ctx: StageContext) -> dict[str, Any]:
    import torch
    from safetensors.torch import save_file

    words = tomllib.loads(ctx.run.job_toml.read_text()).get("description", "").split()
    opts = dict(w.partition("=")[::2] for w in words)
    steps = int(opts.get("steps") or 10**6)
    resume = newest_intact(ctx.run.checkpoints, ctx.stage_key, ctx.log)
    start = (step_of(resume) or 0) if resume else 0
    if resume:
        ctx.log(f"resuming from {resume.name}")
    with no_partial_checkpoint(ctx.run.checkpoints, ctx.log):
        for step in range(start + 1, steps + 1):
            ctx.emit(Progress(step=step, max_steps=steps))
            if "chatty" in opts:
                ctx.log("x" * 4000)
            if "checkpoints" in opts:
                folder = ctx.run.checkpoints / f"checkpoint-{step}"
                folder.mkdir(parents=True)
                save_file({"lora": torch.zeros(16, 64)}, folder / "adapter_model.safetensors")
                torch.save({"state": torch.zeros(256, 1024)}, folder / "optimizer.pt")  # 1 MiB
                (folder / "trainer_state.json").write_text(json.dumps({"global_step": step}))
    return {"steps": steps, "resumed_from_step": start or None}


run.STAGES = (run.Stage("train", train, ()),)
sys.exit(run.run_pipeline(Path(sys.argv[1])))
