"""Run the demo job in a built image through the docker backend, as a non-root user (``just image-check``).

``python tests/container/image_demo.py IMAGE ENGINE_URL WORKDIR``: prepares a run directory of
jobs/demo-tiny.toml under WORKDIR, owned by uid 1000 (the image's ``tuneq`` user), starts the job's
container with :class:`DockerBackend` (the image's own code and venv, no network, no mounts besides the run
directory and the model cache), waits for it, and prints a summary of its ``report.json``. Then it runs the
job again and stops it during training, as ``tuneq cancel`` does. Exit code 0 when the first container exited
0 with a report that says ok, and the stopped one exited 143 with a ``job_end`` marked stopped.
"""

from __future__ import annotations

import json
import os
import sys
import time
from pathlib import Path
from typing import Any

from runner.backends.base import Launch
from runner.backends.container import DockerSettings
from runner.backends.docker import DockerBackend
from runner.backends.errors import BackendError
from runner.commands.staging import prepare_run_dir
from runner.core.events import JobEnd, Progress, read_events
from runner.core.rundir import RunDir
from runner.spec.load import load_spec
from runner.spec.model import JobSpec

ROOT = Path(__file__).resolve().parents[2]
USER = (1000, 1000)  # the image's tuneq user
TIMEOUT_S = 3600


def summary(report: dict[str, Any]) -> dict[str, Any]:
    """The parts of report.json that say whether and how the job ran."""
    smoke = report.get("smoke") or {}
    fidelity = report.get("fidelity") or {}
    perplexity = fidelity.get("perplexity") or {}
    return {
        "ok": report.get("ok"),
        "failure": report.get("failure"),
        "python": report.get("python"),
        "versions": report.get("versions"),
        "stages_s": {name: t["seconds"] for name, t in report.get("stages", {}).items()},
        "train": report.get("train"),
        "smoke_ok": smoke.get("ok"),
        "fidelity_ok": fidelity.get("ok"),
        "perplexity": {f.get("quant"): f.get("ppl") for f in perplexity.get("files", [])},
        "artifacts": [(a["path"], a["bytes"]) for a in report.get("artifacts", [])],
    }


def prepare(workdir: Path, job_id: str) -> tuple[RunDir, JobSpec]:
    """The demo job's run directory under ``workdir``, owned by the image's user, and its spec (no GPU)."""
    loaded = load_spec(ROOT / "jobs" / "demo-tiny.toml")
    run = prepare_run_dir(loaded, workdir / job_id, job_id)
    cache = workdir / "hf"
    cache.mkdir(parents=True, exist_ok=True)
    for path in [workdir, cache, *run.root.rglob("*"), run.root]:
        os.chown(path, *USER)
    return run, loaded.spec.model_copy(update={"run": loaded.spec.run.model_copy(update={"gpus": 0})})


def main(image: str, engine: str, workdir: Path) -> int:
    run, spec = prepare(workdir, "image-check-demo")
    settings = DockerSettings(
        image=image,
        base_url=engine,
        shm_size="1g",
        model_cache=workdir / "hf",
        network="none",
        user=f"{USER[0]}:{USER[1]}",
    )
    backend = DockerBackend(settings, "image-check", None)
    started = time.monotonic()
    try:
        handle = backend.start(Launch("image-check-demo", run.root, spec))
    except BackendError as exc:
        print(f"the demo job did not start: {exc}", file=sys.stderr)
        return 1
    deadline = started + TIMEOUT_S
    while (outcome := backend.poll(handle)) is None:
        if time.monotonic() > deadline:
            backend.stop(handle)
            print(f"the demo job did not finish in {TIMEOUT_S} s", file=sys.stderr)
            return 1
        time.sleep(1)
    elapsed = time.monotonic() - started
    print(f"demo job in the image: exit code {outcome.exit_code}, {outcome.reason or 'ok'}, {elapsed:.0f} s")
    if not run.report.exists():
        print(f"no report.json; last log lines:\n{(run.root / 'log.txt').read_text()[-3000:]}")
        return 1
    report = json.loads(run.report.read_text())
    print("report.json summary:")
    print(json.dumps(summary(report), indent=2))
    ran = outcome.exit_code == 0 and report.get("ok") is True
    return 0 if ran and stopped_in_training(backend, *prepare(workdir, "image-check-stop")) else 1


def stopped_in_training(backend: DockerBackend, run: RunDir, spec: JobSpec) -> bool:
    """Run the demo again, stop its container once training has begun; did it end as a stop should?"""
    handle = backend.start(Launch("image-check-stop", run.root, spec))
    deadline = time.monotonic() + TIMEOUT_S
    while not any(isinstance(e, Progress) and e.stage == "train" for e in read_events(run.events)):
        if (ended := backend.poll(handle)) is not None or time.monotonic() > deadline:
            print(f"the job to stop never reached training ({ended})", file=sys.stderr)
            return False
        time.sleep(0.5)
    backend.stop(handle, grace_s=60)
    outcome = backend.poll(handle)
    end = next((e for e in reversed(read_events(run.events)) if isinstance(e, JobEnd)), None)
    print(
        f"stopped during training: exit code {outcome and outcome.exit_code}, "
        f"job_end stopped={end and end.stopped}, reason {end and end.reason!r}"
    )
    return outcome is not None and outcome.exit_code == 143 and end is not None and end.stopped


if __name__ == "__main__":
    sys.exit(main(sys.argv[1], sys.argv[2], Path(sys.argv[3])))
