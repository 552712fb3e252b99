"""The docker backend: its container configuration (unit) and its life cycle against a real engine.

The ``container`` tests start ``podman system service`` themselves (tests/container/podman-service.sh,
which installs podman where it can) unless ``DOCKER_HOST`` is set, import a small test image
(tests/container/build-test-image.sh) and mount the project's interpreter, venv and checkout read-only,
so the container runs this checkout's code. They skip when no engine can be started, except in CI
(``CI=true``), where that is a failure: CI must not pass without running them.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any, NoReturn

import docker
import pytest
from docker.types import DeviceRequest

from runner.backends.base import Launch, Outcome
from runner.backends.container import (
    CACHE_TARGET,
    CUDA_OOM,
    HOST_OOM,
    BindMount,
    DockerSettings,
    container_name,
    create_kwargs,
    device_requests,
    exit_reason,
)
from runner.backends.docker import DockerBackend, connect
from runner.backends.errors import BackendError
from runner.backends.factory import make_backend
from runner.events import read_events
from runner.gpus import Gpu, discover, parse_nvidia_smi, pick
from runner.spec.model import JobSpec, RunSpec

ROOT = Path(__file__).resolve().parent.parent
SCRIPTS = ROOT / "tests" / "container"
TEST_IMAGE = "localhost/tuneq-test:latest"
TOKEN = "hf_" + "x7" * 16


def _spec(gpus: int = 0, image: str | None = None) -> JobSpec:
    return JobSpec.model_validate(
        {
            "name": "fake",
            "model": {"base": "tuneq:tiny-llama"},
            "data": {"source": "rows.jsonl"},
            "run": {"backend": "docker", "gpus": gpus, "image": image},
        }
    )


def _launch(
    run_dir: Path, job_id: str = "j1", gpus: tuple[int, ...] = (), spec: JobSpec | None = None, **plan: Any
) -> Launch:
    run_dir.mkdir(parents=True, exist_ok=True)
    (run_dir / "fake.json").write_text(json.dumps({"job": job_id, **plan}))
    return Launch(job_id=job_id, run_dir=run_dir, spec=spec or _spec(len(gpus)), gpus=gpus)


# --- unit: the container's configuration, exit reasons, GPUs --------------------------------------------


def test_create_kwargs_mounts_labels_name_env_shm(tmp_path: Path) -> None:
    settings = DockerSettings(image="tuneq:1", model_cache=tmp_path / "hf", shm_size="8g")
    launch = Launch("job/7", tmp_path / "run", _spec(), env={"EXTRA": "1"})
    kwargs = create_kwargs(launch, settings, "w1", {"HF_TOKEN": TOKEN, "PATH": "/secret/path"})
    run_dir = str((tmp_path / "run").resolve())
    assert kwargs["name"] == "tuneq-job-7" == container_name("job/7")
    assert kwargs["labels"] == {"tuneq.job": "job/7", "tuneq.worker": "w1", "tuneq.run_dir": run_dir}
    assert [(m["Source"], m["Target"], m["ReadOnly"]) for m in kwargs["mounts"]] == [
        (run_dir, run_dir, False),
        (str(tmp_path / "hf"), CACHE_TARGET, False),
    ]
    assert kwargs["command"] == ["python", "-m", "runner.pipeline", run_dir]
    assert kwargs["working_dir"] == run_dir and kwargs["shm_size"] == "8g" and kwargs["image"] == "tuneq:1"
    assert kwargs["environment"]["HF_TOKEN"] == TOKEN and kwargs["environment"]["EXTRA"] == "1"
    assert "PATH" not in kwargs["environment"]  # only secrets pass from the worker's environment
    assert kwargs["environment"]["HF_HOME"] == CACHE_TARGET
    assert kwargs["device_requests"] == [] and "network_mode" not in kwargs
    assert kwargs["user"] == f"{os.getuid()}:{os.getgid()}"


def test_run_image_needs_the_docker_backend() -> None:
    with pytest.raises(ValueError, match=r"run\.image is only used with backend = 'docker'"):
        RunSpec.model_validate({"backend": "local", "image": "tuneq:1"})


def test_job_image_overrides_worker_image(tmp_path: Path) -> None:
    launch = Launch("j", tmp_path, _spec(image="tuneq:cu130"))
    assert create_kwargs(launch, DockerSettings(), "w", {})["image"] == "tuneq:cu130"


def test_device_request_names_exactly_the_assigned_gpus(tmp_path: Path) -> None:
    launch = Launch("j", tmp_path, _spec(gpus=2), gpus=(1, 3))
    requests = create_kwargs(launch, DockerSettings(), "w", {})["device_requests"]
    assert (
        requests
        == device_requests((1, 3))
        == [DeviceRequest(driver="nvidia", device_ids=["1", "3"], capabilities=[["gpu"]])]
    )
    assert requests[0]["Count"] == 0  # no "all GPUs" request
    assert device_requests(()) == []


@pytest.mark.parametrize(
    ("state", "tail", "said", "reason"),
    [
        ({"ExitCode": 0}, ["done"], None, None),
        (
            {"ExitCode": 1},
            ["x", "torch.OutOfMemoryError: CUDA out of memory. Tried to allocate 2 GiB"],
            None,
            CUDA_OOM,
        ),
        ({"ExitCode": 1}, [], "train: CUDA out of memory", CUDA_OOM),
        ({"ExitCode": 137, "OOMKilled": True}, ["step 3"], None, HOST_OOM),
        ({"ExitCode": 137, "OOMKilled": True}, ["RuntimeError: CUDA error: out of memory"], None, CUDA_OOM),
        ({"ExitCode": 1}, ["noise"], "smoke test failed", "smoke test failed"),
        ({"ExitCode": 2}, ["ValueError: bad column", ""], None, "exit code 2: ValueError: bad column"),
        ({"ExitCode": 137}, [], None, "killed (SIGKILL)"),
        (
            {"ExitCode": 127, "Error": "exec: python: not found"},
            [],
            None,
            "container error: exec: python: not found",
        ),
    ],
)
def test_exit_reason(state: dict[str, Any], tail: list[str], said: str | None, reason: str | None) -> None:
    assert exit_reason(state, tail, said) == reason


def test_gpu_inventory_and_pick(monkeypatch: pytest.MonkeyPatch) -> None:
    assert parse_nvidia_smi("0, NVIDIA H100 80GB HBM3, 81559\n1, NVIDIA H100 80GB HBM3, 81559\n") == [
        Gpu(0, "NVIDIA H100 80GB HBM3", 81559),
        Gpu(1, "NVIDIA H100 80GB HBM3", 81559),
    ]
    assert discover([2, 0, 2]) == [Gpu(0), Gpu(2)]
    monkeypatch.setenv("PATH", "/nonexistent")
    assert discover() == []
    assert pick({3, 1, 2}, 2) == (1, 2)
    assert pick({1}, 2) is None
    assert pick(set(), 0) == ()


def test_no_engine_is_a_one_line_error(tmp_path: Path) -> None:
    backend = DockerBackend(DockerSettings(base_url=f"unix://{tmp_path}/none.sock"), "w")
    with pytest.raises(BackendError, match=r"^no container engine answers at unix://.*none\.sock") as info:
        connect(f"unix://{tmp_path}/none.sock")
    assert "\n" not in str(info.value)
    problems = backend.preflight(_spec(gpus=1), host_gpus=0)
    assert problems[0] == (
        "the job needs 1 GPU(s); this worker has 0 (none found by nvidia-smi? set the worker's gpus)"
    )
    assert problems[1].startswith("no container engine answers")
    with pytest.raises(BackendError, match="no container engine answers"):
        backend.start(_launch(tmp_path / "run"))


def test_make_backend_by_name(tmp_path: Path) -> None:
    backend = make_backend("docker", "w1", DockerSettings(image="tuneq:2"))
    assert isinstance(backend, DockerBackend) and backend.settings.image == "tuneq:2"
    assert make_backend("local", "w1").name == "local"
    with pytest.raises(BackendError, match="unknown backend 'k8s': use one of local, docker"):
        make_backend("k8s", "w1")


def test_gpu_job_without_assigned_gpu_is_refused(tmp_path: Path) -> None:
    backend = DockerBackend(DockerSettings(base_url=f"unix://{tmp_path}/none.sock"), "w")
    with pytest.raises(BackendError, match=r"^job j1 needs 1 GPU\(s\), 0 assigned$"):
        backend.start(_launch(tmp_path / "run", spec=_spec(gpus=1)))


# --- against a real engine ------------------------------------------------------------------------------


def _no_engine(why: str) -> NoReturn:
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
        _no_engine(f"no container engine: {started.stderr.strip().splitlines()[-1:]}")
    try:
        yield f"unix://{sock}"
    finally:
        subprocess.run([SCRIPTS / "podman-service.sh", "stop", sock], check=False)


@pytest.fixture(scope="session")
def client(engine: str) -> docker.DockerClient:
    """A client of the engine, with the test image present (imported on first use)."""
    try:
        client = connect(engine)
    except BackendError as exc:
        _no_engine(str(exc))
    try:
        client.images.get(TEST_IMAGE)
    except docker.errors.ImageNotFound:
        built = subprocess.run([SCRIPTS / "build-test-image.sh", TEST_IMAGE], capture_output=True, text=True)
        if built.returncode != 0:
            _no_engine(f"cannot build the test image: {built.stderr.strip()[-300:]}")
    return client


def _settings(engine: str, tmp_path: Path, **changes: Any) -> DockerSettings:
    """The test image running the fake pipeline from this checkout (interpreter, venv, code read-only)."""
    base = Path(sys.base_prefix)
    values: dict[str, Any] = {
        "image": TEST_IMAGE,
        "base_url": engine,
        "shm_size": "256m",
        "model_cache": tmp_path / "hf",
        "network": "none",
        "command": (str(ROOT / ".venv/bin/python"), str(SCRIPTS / "fake_pipeline.py")),
        "extra_mounts": (BindMount(ROOT, str(ROOT)), BindMount(base, str(base))),
    }
    (tmp_path / "hf").mkdir(exist_ok=True)
    return DockerSettings(**{**values, **changes})


@pytest.fixture
def backend(engine: str, client: docker.DockerClient, tmp_path: Path) -> Iterator[DockerBackend]:
    """A backend with a fresh worker id; the test fails if it leaves a container behind."""
    worker = f"test-{uuid.uuid4().hex[:8]}"
    yield DockerBackend(_settings(engine, tmp_path), worker, client)
    left = client.containers.list(all=True, filters={"label": f"tuneq.worker={worker}"})
    for container in left:
        container.remove(force=True)
    assert not left, f"containers left behind: {[c.name for c in left]}"


def _wait(backend: DockerBackend, handle: str, timeout_s: float = 60) -> Outcome:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if (outcome := backend.poll(handle)) is not None:
            return outcome
        time.sleep(0.1)
    raise AssertionError("the container did not end")


def _wait_for(predicate: Any, timeout_s: float = 30) -> None:
    deadline = time.monotonic() + timeout_s
    while not predicate():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.1)


@pytest.mark.container
def test_job_runs_to_success_with_labels_name_mounts_shm(
    backend: DockerBackend, client: docker.DockerClient, tmp_path: Path
) -> None:
    run_dir = tmp_path / "run"
    handle = backend.start(_launch(run_dir, "ok-1", print=["hello from {HF_HOME}"], sleep=1))
    attrs = client.containers.get(handle).attrs
    assert attrs["Name"].lstrip("/") == "tuneq-ok-1"
    labels = attrs["Config"]["Labels"]
    assert (labels["tuneq.job"], labels["tuneq.worker"]) == ("ok-1", backend.worker_id)
    extras = {str(ROOT), sys.base_prefix}
    mounts = {m["Destination"]: m for m in attrs["Mounts"] if m["Destination"] not in extras}
    assert set(mounts) == {str(run_dir.resolve()), CACHE_TARGET}
    assert mounts[str(run_dir.resolve())]["RW"] and mounts[CACHE_TARGET]["RW"]
    assert attrs["HostConfig"]["ShmSize"] == 256 * 1024**2
    assert backend.running() == {"ok-1": handle}

    assert _wait(backend, handle) == Outcome(0, None)
    assert "hello from /cache/huggingface\ndone sleeping\n" in (run_dir / "log.txt").read_text()
    assert read_events(run_dir / "events.jsonl")[-1] | {"t": None} == {
        "v": 1,
        "t": None,
        "job": "ok-1",
        "stage": None,
        "type": "job_end",
        "ok": True,
    }
    assert backend.running() == {}


@pytest.mark.container
def test_failing_job_reports_exit_code_and_last_line(backend: DockerBackend, tmp_path: Path) -> None:
    handle = backend.start(_launch(tmp_path / "run", stderr=["KeyError: 'text'"], exit=3, crash=True))
    assert _wait(backend, handle) == Outcome(3, "exit code 3: KeyError: 'text'")
    handle = backend.start(_launch(tmp_path / "said", "said", exit=1, reason="smoke test failed: no EOS"))
    assert _wait(backend, handle) == Outcome(1, "smoke test failed: no EOS")  # the pipeline's own reason
    handle = backend.start(
        _launch(
            tmp_path / "run2",
            "oom",
            exit=1,
            stderr=["torch.OutOfMemoryError: CUDA out of memory. Tried to allocate 20.00 GiB"],
        )
    )
    assert _wait(backend, handle) == Outcome(1, CUDA_OOM)


@pytest.mark.container
def test_cancel_stops_then_removes(
    backend: DockerBackend, client: docker.DockerClient, tmp_path: Path
) -> None:
    run_dir = tmp_path / "run"
    handle = backend.start(_launch(run_dir, "slow", sleep=120))
    _wait_for(lambda: any(e["type"] == "stage_start" for e in read_events(run_dir / "events.jsonl")))
    started = time.monotonic()
    backend.stop(handle, grace_s=10)
    assert time.monotonic() - started < 8  # SIGTERM reached the pipeline through the init, no SIGKILL wait
    assert backend.poll(handle) == Outcome(143, "stopped")
    assert read_events(run_dir / "events.jsonl")[-1]["reason"] == "terminated"
    with pytest.raises(docker.errors.NotFound):
        client.containers.get(handle)
    backend.stop(handle)  # idempotent


@pytest.mark.container
def test_restarted_worker_reattaches_to_running_and_reaps_dead(
    engine: str, backend: DockerBackend, client: docker.DockerClient, tmp_path: Path
) -> None:
    live = backend.start(_launch(tmp_path / "live", "live", print=["before restart"], sleep=3))
    dead = backend.start(_launch(tmp_path / "dead", "dead", stderr=["last words"], exit=5, crash=True))
    _wait_for(lambda: client.containers.get(dead).status == "exited")
    _wait_for(lambda: "before restart" in (tmp_path / "live" / "log.txt").read_text())

    never = client.containers.create(
        **create_kwargs(  # the worker died between create and start
            _launch(tmp_path / "never", "never"), backend.settings, backend.worker_id, {}
        )
    ).id

    restarted = DockerBackend(_settings(engine, tmp_path), backend.worker_id, client)  # memory lost
    assert restarted.running() == {"live": live}
    assert restarted.poll(never) == Outcome(-1, "the container was created but never started")
    assert restarted.poll(dead) == Outcome(5, "exit code 5: last words")
    with pytest.raises(docker.errors.NotFound):
        client.containers.get(dead)
    assert "last words" in (tmp_path / "dead" / "log.txt").read_text()

    assert _wait(restarted, live) == Outcome(0, None)
    log = (tmp_path / "live" / "log.txt").read_text()
    assert "worker re-attached" in log and log.rstrip().endswith("done sleeping")
    assert DockerBackend(_settings(engine, tmp_path), "another-worker", client).running() == {}


@pytest.mark.container
def test_hf_token_reaches_the_container_but_no_file(
    backend: DockerBackend, client: docker.DockerClient, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("HF_TOKEN", TOKEN)
    run_dir = tmp_path / "run"
    handle = backend.start(_launch(run_dir, "tok", print=["token is {HF_TOKEN}"], sleep=0.5))
    assert f"HF_TOKEN={TOKEN}" in client.containers.get(handle).attrs["Config"]["Env"]
    assert _wait(backend, handle) == Outcome(0, None)
    log, events = (run_dir / "log.txt").read_text(), (run_dir / "events.jsonl").read_text()
    assert "token is ***" in log and "token is ***" in events
    assert not [p for p in run_dir.rglob("*") if p.is_file() and TOKEN in p.read_text(errors="replace")]


@pytest.mark.container
def test_missing_image_is_a_clear_error(engine: str, client: docker.DockerClient, tmp_path: Path) -> None:
    settings = _settings(engine, tmp_path, image="localhost/tuneq-missing:0")
    backend = DockerBackend(settings, "w-missing", client)
    message = "image 'localhost/tuneq-missing:0' is not on the engine: build it with `just image`"
    with pytest.raises(BackendError) as info:
        backend.start(_launch(tmp_path / "run"))
    assert str(info.value) == message
    assert backend.preflight(_spec(), host_gpus=0) == [message]
    assert DockerBackend(_settings(engine, tmp_path), "w", client).preflight(_spec(), host_gpus=0) == []


@pytest.mark.container
@pytest.mark.slow
def test_demo_job_runs_in_a_container(engine: str, client: docker.DockerClient, tmp_path: Path) -> None:
    """The real pipeline on the demo job, in the test image with this checkout mounted read-only."""
    demo = ROOT / "jobs" / "demo-tiny.toml"
    if not demo.exists() or not (ROOT / "runner" / "pipeline" / "__main__.py").exists():
        pytest.skip("jobs/demo-tiny.toml or runner/pipeline is not written yet")
    from runner.rundir import prepare_run_dir
    from runner.spec.load import load_spec

    loaded = load_spec(demo)
    run = prepare_run_dir(loaded, tmp_path / "run", "demo-1")
    spec = loaded.spec.model_copy(update={"run": loaded.spec.run.model_copy(update={"gpus": 0})})
    settings = _settings(engine, tmp_path, command=(str(ROOT / ".venv/bin/python"), "-m", "runner.pipeline"))
    backend = DockerBackend(settings, "w-demo", client)
    outcome = _wait(backend, backend.start(Launch("demo-1", run.root, spec)), timeout_s=1500)
    assert outcome == Outcome(0, None), f"the pipeline failed in the container: {outcome.reason}"
    assert read_events(run.events)[-1]["ok"] is True
