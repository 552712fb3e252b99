"""Stands in for ``python -m runner.pipeline RUN_DIR`` in the container tests and the benchmark.

Does what ``RUN_DIR/fake.json`` says: ``print`` (lines for stdout, ``{NAME}`` filled from the environment),
``sleep`` (seconds), ``stderr`` (lines), ``exit`` (code), ``reason`` (of the ``job_end`` event; ``crash``:
no ``job_end``). Writes events like the real pipeline; on SIGTERM it ends with a ``job_end`` saying so
and exit code 143.
"""

import json
import os
import signal
import sys
import time
from pathlib import Path

from runner.core.events import EventWriter, JobEnd, Log, StageStart
from runner.core.secrets import load_secret_files

load_secret_files()  # as python -m runner.pipeline does
run_dir = Path(sys.argv[1])
plan = json.loads((run_dir / "fake.json").read_text())
events = EventWriter(run_dir / "events.jsonl", job=plan.get("job", "fake"))


def _terminated(signum: int, frame: object) -> None:
    events.emit(JobEnd(ok=False, reason="terminated"))
    sys.exit(143)


signal.signal(signal.SIGTERM, _terminated)
events.emit(StageStart(stage="train"))
for line in plan.get("print", []):
    text = line.format(**os.environ)
    print(text, flush=True)
    events.emit(Log(stage="train", message=text))
time.sleep(plan.get("sleep", 0))
print("done sleeping", flush=True)
for line in plan.get("stderr", []):
    print(line, file=sys.stderr, flush=True)
code = plan.get("exit", 0)
if not plan.get("crash"):
    events.emit(JobEnd(ok=code == 0, reason=plan.get("reason")))
sys.exit(code)
