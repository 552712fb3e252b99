"""Shared fixtures: a private state directory, job files, and the fake pipeline."""

from __future__ import annotations

import ast
import json
import os
import shlex
import shutil
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any, NoReturn

import pytest

import runner.pipeline  # noqa: F401  (tests load llama.cpp and torch: libstdc++ first, runner/llamacpp/stdcxx.py)
from runner.store import Store

if TYPE_CHECKING:
    import docker

ROOT = Path(__file__).resolve().parent.parent
SCRIPTS = ROOT / "tests" / "container"  # the container tests' engine and image scripts
VENV = Path(sys.prefix)  # the venv running the tests (a worktree may use another checkout's)
TEST_IMAGE = "localhost/tuneq-test:latest"
FAKE_PIPELINE = [sys.executable, str(Path(__file__).with_name("fake_pipeline.py"))]
DATA = ROOT / "jobs" / "data" / "medical-cot-tiny.jsonl"

JobFactory = Callable[..., Path]


@pytest.fixture
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A fresh TUNEQ_HOME whose workers run the fake pipeline; runs are logged to FAKE_RUNS_LOG."""
    state = tmp_path / "state"
    monkeypatch.setenv("TUNEQ_HOME", str(state))
    monkeypatch.setenv("TUNEQ_PIPELINE_CMD", shlex.join(FAKE_PIPELINE))
    monkeypatch.setenv("FAKE_RUNS_LOG", str(tmp_path / "runs.log"))
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")])))
    return state


@pytest.fixture
def store(home: Path) -> Iterator[Store]:
    """The store of ``home``."""
    with Store() as s:
        yield s


@pytest.fixture
def make_job(tmp_path: Path) -> JobFactory:
    """Write a valid job file; ``description`` steers the fake pipeline (see fake_pipeline.py)."""
    jobs = tmp_path / "jobs"
    (jobs / "data").mkdir(parents=True, exist_ok=True)
    shutil.copy(DATA, jobs / "data" / DATA.name)

    def make(name: str = "job", description: str = "", retries: int = 1) -> Path:
        path = jobs / f"{name}.toml"
        path.write_text(
            f'name = "{name}"\ndescription = "{description}"\n\n[model]\nbase = "tuneq:tiny-llama"\n\n'
            f'[data]\nsource = "data/{DATA.name}"\nformat = "columns"\n'
            '[data.columns]\nprompt = "Question"\nreasoning = "Complex_CoT"\nresponse = "Response"\n\n'
            '[template]\nstyle = "r1"\n\n'  # the tiny model's own chat template renders turns inconsistently
            f"[run]\nretries = {retries}\n"
        )
        return path

    return make


def runs_log(tmp_path: Path) -> list[str]:
    """Job ids in the order the fake pipeline started them."""
    path = tmp_path / "runs.log"
    return [line.split()[0] for line in path.read_text().splitlines()] if path.exists() else []


def gone(pid: int) -> bool:
    """The process no longer runs (a zombie waiting for a reaper counts as gone)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except FileNotFoundError:
        return True
    return stat.rpartition(")")[2].split()[0] == "Z"


def heavy_modules_after(code: str, modules: tuple[str, ...]) -> list[str]:
    """Which of ``modules`` a fresh interpreter has loaded after running ``code``."""
    probe = f"{code}\nimport sys\nprint(sorted(m for m in {modules!r} if m in sys.modules))"
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True).stdout
    return list(ast.literal_eval(out.strip()))


# --- a container engine (tests/test_docker_backend.py, the container job on a cluster node) ---------------


def no_engine(why: str) -> NoReturn:
    """Skip the engine's tests; in CI (``CI=true``) fail instead."""
    if os.environ.get("CI") == "true":
        pytest.fail(f"CI=true and {why}", pytrace=False)
    pytest.skip(why)


@pytest.fixture(scope="session")
def engine(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A Docker Engine API URL: ``$DOCKER_HOST``, else a podman service started for this session."""
    if url := os.environ.get("DOCKER_HOST"):
        yield url
        return
    sock = tmp_path_factory.mktemp("engine") / "podman.sock"
    started = subprocess.run([SCRIPTS / "podman-service.sh", "start", sock], capture_output=True, text=True)
    if started.returncode != 0:
        no_engine(f"no container engine: {started.stderr.strip().splitlines()[-1:]}")
    try:
        yield f"unix://{sock}"
    finally:
        subprocess.run([SCRIPTS / "podman-service.sh", "stop", sock], check=False)


@pytest.fixture(scope="session")
def client(engine: str) -> docker.DockerClient:
    """A client of the engine, with the test image present (imported on first use)."""
    import docker

    from runner.backends.docker import connect
    from runner.backends.errors import BackendError

    try:
        client = connect(engine)
    except BackendError as exc:
        no_engine(str(exc))
    try:
        client.images.get(TEST_IMAGE)
    except docker.errors.ImageNotFound:
        built = subprocess.run(
            [SCRIPTS / "build-test-image.sh", TEST_IMAGE],
            capture_output=True,
            text=True,
            env={**os.environ, "TUNEQ_TEST_VENV": str(VENV)},
        )
        if built.returncode != 0:
            no_engine(f"cannot build the test image: {built.stderr.strip()[-300:]}")
    return client


def run_job_file(job_file: Path, base: Path) -> tuple[Path, dict[str, Any]]:
    """``tuneq run`` of ``job_file`` in a fresh state directory under ``base`` (offline, this checkout's
    runner); the run directory ``base/run`` and its report. Fails the test with the output's tail."""
    result = subprocess.run(
        [sys.executable, "-m", "runner", "run", str(job_file), "--run-dir", str(base / "run")],
        capture_output=True,
        text=True,
        cwd=ROOT,
        env={
            **os.environ,
            "TUNEQ_HOME": str(base / "home"),
            "HF_HUB_OFFLINE": "1",
            # the pipeline child runs in the run directory: it must import this checkout's runner
            "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")])),
        },
        timeout=3300,
    )
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    return base / "run", json.loads((base / "run" / "report.json").read_text())
