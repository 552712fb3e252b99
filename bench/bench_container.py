"""Container start overhead against a local process, on the fake pipeline (tests/container/fake_pipeline.py).

    .venv/bin/python bench/bench_container.py [--repeats 7]

Uses ``$DOCKER_HOST``, else starts a podman service for the run (tests/container/podman-service.sh) and
imports the test image if missing. Both backends run the same command from this checkout; the docker one
in the test image with the interpreter, venv and checkout mounted read-only. Times from ``start()``:
``start`` (the call returns), ``running`` (the engine says running; local: the call's return),
``first event`` (the pipeline's ``stage_start`` in events.jsonl), ``done`` (``poll`` gives the outcome;
docker: the container is removed by then). Medians and ranges of ``--repeats`` runs.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from runner.backends.base import Backend, Launch  # noqa: E402
from runner.backends.container import BindMount, DockerSettings  # noqa: E402
from runner.backends.docker import DockerBackend, connect  # noqa: E402
from runner.backends.local import LocalBackend  # noqa: E402
from runner.spec.model import JobSpec  # noqa: E402

SCRIPTS = ROOT / "tests" / "container"
IMAGE = "localhost/tuneq-test:latest"
COMMAND = (str(ROOT / ".venv" / "bin" / "python"), str(SCRIPTS / "fake_pipeline.py"))
SPEC = JobSpec.model_validate(
    {
        "name": "bench",
        "model": {"base": "tuneq:tiny-llama"},
        "data": {"source": "rows.jsonl"},
        "run": {"backend": "docker", "gpus": 0},
    }
)


def _until(predicate: Callable[[], object], started: float) -> float:
    while not predicate():
        time.sleep(0.005)
    return time.monotonic() - started


def one_run(backend: Backend, run_dir: Path, is_running: Callable[[str], bool]) -> dict[str, float]:
    """Timings of one job of the fake pipeline (no sleep, exit 0)."""
    run_dir.mkdir(parents=True)
    (run_dir / "fake.json").write_text(json.dumps({"job": run_dir.name}))
    events = run_dir / "events.jsonl"
    started = time.monotonic()
    handle = backend.start(Launch(run_dir.name, run_dir, SPEC))
    times = {"start": time.monotonic() - started}
    times["running"] = _until(lambda: is_running(handle) or events.exists(), started)
    times["first event"] = _until(lambda: events.exists() and events.stat().st_size > 0, started)
    outcome = None

    def done() -> bool:
        nonlocal outcome
        outcome = backend.poll(handle)
        return outcome is not None

    times["done"] = _until(done, started)
    assert outcome is not None and outcome.exit_code == 0, outcome
    return times


def main() -> int:
    """Run both backends ``--repeats`` times and print a table."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=7)
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="tuneq-bench-"))
    sock = work / "podman.sock"
    own_engine = "DOCKER_HOST" not in os.environ
    url = os.environ.get("DOCKER_HOST", f"unix://{sock}")
    if own_engine:
        subprocess.run([SCRIPTS / "podman-service.sh", "start", sock], check=True)
    try:
        client = connect(url)
        if not client.images.list(name=IMAGE):
            subprocess.run([SCRIPTS / "build-test-image.sh", IMAGE], check=True)
        base = Path(sys.base_prefix)
        (work / "hf").mkdir()
        settings = DockerSettings(
            image=IMAGE,
            base_url=url,
            model_cache=work / "hf",
            network="none",
            shm_size="256m",
            command=COMMAND,
            extra_mounts=(BindMount(ROOT, str(ROOT)), BindMount(base, str(base))),
        )
        docker_backend = DockerBackend(settings, "bench", client)
        local = LocalBackend(list(COMMAND))

        def container_running(handle: str) -> bool:
            return client.containers.get(handle).status != "created"

        results: dict[str, list[dict[str, float]]] = {"local": [], "docker": []}
        for i in range(args.repeats + 1):  # the first round warms caches and is dropped
            for name, backend, probe in (
                ("local", local, lambda h: True),
                ("docker", docker_backend, container_running),
            ):
                timing = one_run(backend, work / f"{name}-{i}", probe)
                if i:
                    results[name].append(timing)
        print(f"{'':8}" + "".join(f"{key:>24}" for key in results["local"][0]))
        for name, runs in results.items():
            cells = []
            for key in runs[0]:
                values = [run[key] * 1000 for run in runs]
                cells.append(f"{statistics.median(values):7.0f} ms ({min(values):.0f}-{max(values):.0f})")
            print(f"{name:8}" + "".join(f"{cell:>24}" for cell in cells))
        engine = client.version()["Version"]
        print(f"median (min-max) of {args.repeats} runs; python {sys.version.split()[0]}, engine {engine}")
    finally:
        if own_engine:
            subprocess.run([SCRIPTS / "podman-service.sh", "stop", sock], check=False)
    return 0


if __name__ == "__main__":
    sys.exit(main())
