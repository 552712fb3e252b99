"""A stand-in for ``python -m runner.pipeline RUN_DIR`` for queue tests (set through TUNEQ_PIPELINE_CMD).

It behaves as the job file's ``description`` says, as space-separated words:
``steps=N`` progress events (default 3), ``sleep=S`` seconds spread over the steps, ``fail`` (ends with a
failing job_end, exit 1), ``crash`` (exits 3 without job_end), ``ignore-term`` (survives SIGTERM, noting it in ``sigterm``),
``fail-first`` (fails on the first attempt only), ``linger=S`` (waits S seconds after the last step),
``tested=QUANT`` (job_end names ``gguf/<name>-<QUANT>.gguf`` as the tested file), ``ckpt`` (writes
``checkpoints/checkpoint-<step>/trainer_state.json`` after each step and resumes after the newest one, naming
it in a ``metric`` event's ``resumed_from_step`` before job_end), ``blob=MB`` (writes ``gguf/blob.bin`` of MB MiB), ``leak`` (prints
$HF_TOKEN to stdout and stderr and puts it in event fields, as a careless library might). Like the real
pipeline it holds the run directory's lock, exiting 75 if another holds it; every start that gets it appends
``<job> <pid>`` to $FAKE_RUNS_LOG.
"""

import contextlib
import json
import os
import signal
import sys
import time
import tomllib
from pathlib import Path

from runner.core.events import Error, EventWriter, JobEnd, Metric, Progress, StageEnd, StageStart
from runner.core.rundir import EXIT_BUSY, RunDir, RunDirBusy

run_dir = Path(sys.argv[1])
holding = contextlib.ExitStack()  # the run directory's lock, held for life as the real pipeline does
try:
    holding.enter_context(RunDir(run_dir).locked())
except RunDirBusy as busy:
    print(f"tuneq pipeline: {busy}", file=sys.stderr)
    sys.exit(EXIT_BUSY)
spec = tomllib.loads((run_dir / "job.toml").read_text())
words = (spec.get("description") or "").split()
opts = dict(w.partition("=")[::2] for w in words)
job = json.loads((run_dir / "job.json").read_text())["job"]
if runs_log := os.environ.get("FAKE_RUNS_LOG"):
    with open(runs_log, "a") as handle:
        handle.write(f"{job} {os.getpid()}\n")
if "ignore-term" in opts:  # survive SIGTERM; note each one in <run dir>/sigterm
    signal.signal(signal.SIGTERM, lambda *_: (run_dir / "sigterm").open("a").write("ignored\n"))
attempt_file = run_dir / "attempts"
attempt = int(attempt_file.read_text()) + 1 if attempt_file.exists() else 1
attempt_file.write_text(str(attempt))

events = EventWriter(run_dir / "events.jsonl", job)
events.emit(StageStart(stage="train"))
if "leak" in opts:
    token = os.environ["HF_TOKEN"]
    print(f"Authorization: Bearer {token}", flush=True)
    print(f"retrying with token={token}", file=sys.stderr, flush=True)
    events.emit(Metric(stage="train", values={"authorization": f"Bearer {token}", "tried": token}))
steps, sleep = int(opts.get("steps") or 3), float(opts.get("sleep") or 0)
saved = [
    int(p.parent.name.split("-")[1])
    for p in (run_dir / "checkpoints").glob("checkpoint-*/trainer_state.json")
]
resumed = max(saved) if "ckpt" in opts and saved else None
for step in range((resumed or 0) + 1, steps + 1):
    time.sleep(sleep / steps)
    loss = round(2.0 / step, 4)
    events.emit(Progress(stage="train", step=step, max_steps=steps, loss=loss, eta_s=steps - step))
    if "ckpt" in opts:
        folder = run_dir / "checkpoints" / f"checkpoint-{step}"
        folder.mkdir(parents=True, exist_ok=True)
        (folder / "adapter.bin").write_bytes(os.urandom(4096))
        (folder / "trainer_state.json").write_text(json.dumps({"global_step": step}))
time.sleep(float(opts.get("linger") or 0))
if "crash" in opts:
    sys.exit(3)
if "fail" in opts or ("fail-first" in opts and attempt == 1):
    events.emit(Error(stage="train", cause="fake failure"))
    events.emit(StageEnd(stage="train", ok=False, seconds=sleep))
    events.emit(JobEnd(ok=False, reason="fake failure"))
    sys.exit(1)
events.emit(StageEnd(stage="train", ok=True, seconds=sleep))
if blob := opts.get("blob"):
    (run_dir / "gguf").mkdir(exist_ok=True)
    block = os.urandom(1 << 20)
    with (run_dir / "gguf" / "blob.bin").open("wb") as out:
        for _ in range(int(blob)):
            out.write(block)
if tested := opts.get("tested"):
    path = str(RunDir(run_dir).quant_gguf(spec["name"], tested).relative_to(run_dir))
    events.emit(JobEnd(ok=True, tested_gguf=path, tested_quant=tested))
else:
    if "ckpt" in opts:
        events.emit(Metric(stage="train", values={"resumed_from_step": resumed}))
    events.emit(JobEnd(ok=True))
