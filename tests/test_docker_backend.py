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
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import docker
import pytest
from conftest import ROOT, SCRIPTS, TEST_IMAGE, VENV
from docker.types import DeviceRequest

from runner.backends.base import Launch, Outcome
from runner.backends.container import (
    CACHE_TARGET,
    LABEL_JOB,
    LABEL_QUEUE,
    LABEL_WORKER,
    SECRETS_TARGET,
    BindMount,
    DockerSettings,
    container_name,
    create_kwargs,
    device_requests,
    downloads,
    exit_reason,
    queue_id,
    remove_secret_files,
    write_secret_files,
)
from runner.backends.docker import DockerBackend, connect
from runner.backends.errors import BackendError
from runner.backends.factory import make_backend
from runner.core.events import JobEnd, StageStart, read_events
from runner.core.failures import CUDA_OOM, HOST_OOM
from runner.spec.model import JobSpec, RunSpec
from runner.worker.gpus import Gpu, discover, parse_nvidia_smi, pick

PYTHON = ("env", f"PYTHONPATH={ROOT}", str(VENV / "bin" / "python"))  # this checkout's code first
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
    settings = DockerSettings(image="tuneq:1", model_cache=tmp_path / "hf", shm_size="8g", queue="q1")
    launch = Launch("job/7", tmp_path / "run", _spec(), env={"EXTRA": "1"})
    secrets = write_secret_files({"HF_TOKEN": TOKEN})
    assert secrets is not None
    kwargs = create_kwargs(launch, settings, "w1", {"HF_TOKEN": TOKEN, "PATH": "/secret/path"}, secrets)
    run_dir = str((tmp_path / "run").resolve())
    assert kwargs["name"] == "tuneq-q1-job-7" == container_name("q1", "job/7")
    assert kwargs["labels"] == {
        "tuneq.job": "job/7",
        "tuneq.worker": "w1",
        "tuneq.queue": "q1",
        "tuneq.run_dir": run_dir,
        "tuneq.secrets": str(secrets),
    }
    assert [(m["Source"], m["Target"], m["ReadOnly"]) for m in kwargs["mounts"]] == [
        (run_dir, run_dir, False),
        (str(tmp_path / "hf"), CACHE_TARGET, True),  # a built-in base and local data download nothing
        (str(secrets), SECRETS_TARGET, True),
    ]
    assert kwargs["command"] == ["python", "-m", "runner.pipeline", run_dir]
    assert kwargs["working_dir"] == run_dir and kwargs["shm_size"] == "8g" and kwargs["image"] == "tuneq:1"
    assert kwargs["environment"]["HF_TOKEN_FILE"] == f"{SECRETS_TARGET}/HF_TOKEN"
    assert kwargs["environment"]["EXTRA"] == "1"
    assert TOKEN not in json.dumps(kwargs["environment"])  # secrets never enter the environment
    assert "PATH" not in kwargs["environment"]  # only secrets pass from the worker's environment
    assert kwargs["environment"]["HF_HUB_CACHE"] == f"{CACHE_TARGET}/hub"
    assert kwargs["environment"]["HF_HUB_OFFLINE"] == "1"
    assert kwargs["device_requests"] == [] and "network_mode" not in kwargs
    assert kwargs["user"] == f"{os.getuid()}:{os.getgid()}"
    assert (secrets.stat().st_mode & 0o777, (secrets / "HF_TOKEN").stat().st_mode & 0o777) == (0o700, 0o600)
    assert (secrets / "HF_TOKEN").read_text() == TOKEN
    remove_secret_files(secrets)
    assert not secrets.exists()


def test_queue_id_is_per_state_dir(tmp_path: Path) -> None:
    one, two = queue_id(tmp_path / "a"), queue_id(tmp_path / "b")
    assert one != two and len(one) == 10 and queue_id(tmp_path / "a" / ".." / "a") == one
    assert container_name(one, "1") != container_name(two, "1")


def _hub_model(cache: Path, repo: str, files: dict[str, str]) -> None:
    """A model in a Hugging Face hub cache laid out as huggingface_hub writes it."""
    folder = cache / "hub" / f"models--{repo.replace('/', '--')}"
    (folder / "refs").mkdir(parents=True, exist_ok=True)
    (folder / "refs" / "main").write_text("c0ffee")
    for name, text in files.items():
        (folder / "snapshots" / "c0ffee").mkdir(parents=True, exist_ok=True)
        (folder / "snapshots" / "c0ffee" / name).write_text(text)


def test_model_cache_is_read_write_only_when_the_job_downloads(tmp_path: Path) -> None:
    pytest.importorskip("huggingface_hub")
    cache = tmp_path / "hf"
    index = json.dumps({"weight_map": {"a": "model-1.safetensors", "b": "model-2.safetensors"}})
    _hub_model(cache, "org/whole", {"config.json": "{}", "model.safetensors": ""})
    _hub_model(
        cache,
        "org/partial",
        {"config.json": "{}", "model.safetensors.index.json": index, "model-1.safetensors": ""},
    )

    def spec(base: str, source: str = "rows.jsonl") -> JobSpec:
        return JobSpec.model_validate({"name": "x", "model": {"base": base}, "data": {"source": source}})

    assert not downloads(spec("tuneq:tiny-llama"), tmp_path, {}, cache)
    assert not downloads(spec(str(tmp_path)), tmp_path, {}, cache)  # a local base
    assert not downloads(spec("org/whole"), tmp_path, {}, cache)
    assert downloads(spec("org/partial"), tmp_path, {}, cache)  # a shard is missing
    assert downloads(spec("org/absent"), tmp_path, {}, cache)
    assert downloads(spec("tuneq:tiny-llama", "org/some-dataset"), tmp_path, {}, cache)  # hub data
    assert not downloads(spec("org/absent", "org/some-dataset"), tmp_path, {"HF_HUB_OFFLINE": "1"}, cache)
    launch = Launch("j", tmp_path / "run", spec("org/absent"))
    kwargs = create_kwargs(launch, DockerSettings(model_cache=cache, queue="q"), "w", {})
    cache_mount = next(m for m in kwargs["mounts"] if m["Target"] == CACHE_TARGET)
    assert not cache_mount["ReadOnly"] and kwargs["environment"]["HF_HOME"] == CACHE_TARGET
    assert "HF_HUB_OFFLINE" not in kwargs["environment"]
    model = tmp_path / "my-model"  # a local base (as submit resolved it) is there, read-only, at its own path
    model.mkdir()
    kwargs = create_kwargs(
        Launch("j", tmp_path / "run", spec(str(model))), DockerSettings(queue="q"), "w", {}
    )
    assert {(m["Source"], m["ReadOnly"]) for m in kwargs["mounts"] if m["Target"] == str(model)} == {
        (str(model), True)
    }


def test_run_image_needs_the_docker_backend() -> None:
    with pytest.raises(ValueError, match=r"run\.image is only used with backend = 'docker'"):
        RunSpec.model_validate({"backend": "local", "image": "tuneq:1"})


def test_job_image_overrides_worker_image(tmp_path: Path) -> None:
    launch = Launch("j", tmp_path, _spec(image="tuneq:cu130"))
    assert create_kwargs(launch, DockerSettings(), "w", {})["image"] == "tuneq:cu130"


def test_device_request_names_exactly_the_assigned_gpus(tmp_path: Path) -> None:
    launch = Launch("j", tmp_path, _spec(gpus=1), gpus=(3,))
    requests = create_kwargs(launch, DockerSettings(), "w", {})["device_requests"]
    assert requests == [DeviceRequest(driver="nvidia", device_ids=["3"], capabilities=[["gpu"]])]
    assert device_requests((1, 3)) == [
        DeviceRequest(driver="nvidia", device_ids=["1", "3"], capabilities=[["gpu"]])
    ]
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


def _settings(engine: str, tmp_path: Path, **changes: Any) -> DockerSettings:
    """The test image running the fake pipeline from this checkout (interpreter, venv, code read-only)."""
    trees = {ROOT, VENV, Path(sys.base_prefix)}
    outer = sorted(p for p in trees if not any(p != q and p.is_relative_to(q) for q in trees))
    values: dict[str, Any] = {
        "image": TEST_IMAGE,
        "base_url": engine,
        "shm_size": "256m",
        "model_cache": tmp_path / "hf",
        "network": "none",
        "command": (*PYTHON, str(SCRIPTS / "fake_pipeline.py")),
        "extra_mounts": tuple(BindMount(p, str(p)) for p in outer),
        "queue": queue_id(tmp_path),
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


def live_containers(client: docker.DockerClient, backend: DockerBackend) -> dict[str, str]:
    """The engine's live containers of ``backend``'s queue and worker (job id -> container id)."""
    labels = [f"{LABEL_QUEUE}={backend.settings.queue}", f"{LABEL_WORKER}={backend.worker_id}"]
    found = client.containers.list(all=True, filters={"label": labels})
    return {c.labels[LABEL_JOB]: c.id for c in found if c.status == "running"}


@pytest.mark.container
def test_job_runs_to_success_with_labels_name_mounts_shm(
    backend: DockerBackend, client: docker.DockerClient, tmp_path: Path
) -> None:
    run_dir = tmp_path / "run"
    handle = backend.start(_launch(run_dir, "ok-1", print=["hello from {HF_HUB_CACHE}"], sleep=1))
    attrs = client.containers.get(handle).attrs
    assert attrs["Name"].lstrip("/") == f"tuneq-{backend.settings.queue}-ok-1"
    labels = attrs["Config"]["Labels"]
    assert (labels["tuneq.job"], labels["tuneq.worker"]) == ("ok-1", backend.worker_id)
    extras = {str(ROOT), sys.prefix, sys.base_prefix}
    mounts = {m["Destination"]: m for m in attrs["Mounts"] if m["Destination"] not in extras}
    assert set(mounts) == {str(run_dir.resolve()), CACHE_TARGET}
    assert mounts[str(run_dir.resolve())]["RW"] and not mounts[CACHE_TARGET]["RW"]  # nothing to download
    assert attrs["HostConfig"]["ShmSize"] == 256 * 1024**2
    assert live_containers(client, backend) == {"ok-1": handle}

    assert _wait(backend, handle) == Outcome(0, None)
    assert "hello from /cache/huggingface/hub\ndone sleeping\n" in (run_dir / "log.txt").read_text()
    end = read_events(run_dir / "events.jsonl")[-1]
    assert end == JobEnd(t=end.t, job="ok-1", ok=True)
    assert live_containers(client, backend) == {}


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
    _wait_for(lambda: any(isinstance(e, StageStart) for e in read_events(run_dir / "events.jsonl")))
    started = time.monotonic()
    backend.stop(handle, grace_s=10)
    assert time.monotonic() - started < 8  # SIGTERM reached the pipeline through the init, no SIGKILL wait
    assert backend.poll(handle) == Outcome(143, "stopped")
    end = read_events(run_dir / "events.jsonl")[-1]
    assert isinstance(end, JobEnd) and end.reason == "terminated"
    with pytest.raises(docker.errors.NotFound):
        client.containers.get(handle)
    backend.stop(handle)  # idempotent


@pytest.mark.container
def test_a_restarted_worker_polls_running_and_reaps_dead_containers(
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
    assert restarted.poll(live) is None  # still running: its log is copied again
    assert restarted.poll(never) == Outcome(-1, "the container was created but never started")
    assert restarted.poll(dead) == Outcome(5, "exit code 5: last words")
    with pytest.raises(docker.errors.NotFound):
        client.containers.get(dead)
    assert "last words" in (tmp_path / "dead" / "log.txt").read_text()

    assert _wait(restarted, live) == Outcome(0, None)
    log = (tmp_path / "live" / "log.txt").read_text()
    assert "worker re-attached" in log and log.rstrip().endswith("done sleeping")


@pytest.mark.container
@pytest.mark.parametrize("given", ["worker environment", "launch"])  # launch: as a cluster node gets it
def test_hf_token_reaches_the_container_as_a_file_not_in_its_environment(
    given: str,
    backend: DockerBackend,
    client: docker.DockerClient,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delenv("HF_TOKEN", raising=False)
    if given == "worker environment":
        monkeypatch.setenv("HF_TOKEN", TOKEN)
    run_dir = tmp_path / "run"
    launch = _launch(run_dir, "tok", print=["token is {HF_TOKEN}"], sleep=0.5)
    if given == "launch":
        launch = Launch(launch.job_id, launch.run_dir, launch.spec, env={"HF_TOKEN": TOKEN})
    handle = backend.start(launch)
    attrs = client.containers.get(handle).attrs
    assert TOKEN not in json.dumps(attrs)  # what `docker inspect` shows: no token anywhere
    assert f"HF_TOKEN_FILE={SECRETS_TARGET}/HF_TOKEN" in attrs["Config"]["Env"]
    secrets = Path(attrs["Config"]["Labels"]["tuneq.secrets"])
    assert not secrets.is_relative_to(run_dir) and (secrets / "HF_TOKEN").read_text() == TOKEN
    mount = next(m for m in attrs["Mounts"] if m["Destination"] == SECRETS_TARGET)
    assert (mount["Source"], mount["RW"]) == (str(secrets), False)
    assert _wait(backend, handle) == Outcome(0, None)  # the pipeline read the file (else: KeyError, exit 1)
    log, events = (run_dir / "log.txt").read_text(), (run_dir / "events.jsonl").read_text()
    assert "token is ***" in log and "token is ***" in events
    assert not [p for p in run_dir.rglob("*") if p.is_file() and TOKEN in p.read_text(errors="replace")]
    assert not secrets.exists()  # removed with the container


@pytest.mark.container
def test_two_queues_on_one_engine_never_share_or_reap_each_others_containers(
    engine: str, client: docker.DockerClient, tmp_path: Path
) -> None:
    """Two state directories (two TUNEQ_HOME), each with its job 1 and a worker of the same id."""
    one, two = (
        DockerBackend(_settings(engine, tmp_path, queue=queue_id(tmp_path / home)), "w", client)
        for home in ("home-a", "home-b")
    )
    try:
        first = one.start(_launch(tmp_path / "a" / "1", "1", sleep=30))
        second = two.start(_launch(tmp_path / "b" / "1", "1", sleep=30))  # same job id: no name clash
        dead = one.start(_launch(tmp_path / "a" / "2", "2", stderr=["last words"], exit=5, crash=True))
        _wait_for(lambda: client.containers.get(dead).status == "exited")
        assert first != second
        assert live_containers(client, two) == {"1": second}  # the other queue's container is not listed
        assert live_containers(client, one) == {"1": first}
        assert one.poll(dead) == Outcome(5, "exit code 5: last words")
        one.stop(first, grace_s=1)
        assert live_containers(client, two) == {"1": second}  # untouched by the other queue's stop
        assert client.containers.get(second).status == "running"
    finally:
        for backend in (one, two):
            for handle in live_containers(client, backend).values():
                backend.stop(handle, grace_s=1)


@pytest.mark.container
def test_missing_image_is_a_clear_error(engine: str, client: docker.DockerClient, tmp_path: Path) -> None:
    settings = _settings(engine, tmp_path, image="localhost/tuneq-missing:0")
    backend = DockerBackend(settings, "w-missing", client)
    message = "image 'localhost/tuneq-missing:0' is not on the engine: build it with `just image`"
    with pytest.raises(BackendError) as info:
        backend.start(_launch(tmp_path / "run"))
    assert str(info.value) == message


@pytest.mark.container
@pytest.mark.slow
def test_demo_job_runs_in_a_container(engine: str, client: docker.DockerClient, tmp_path: Path) -> None:
    """The real pipeline on the demo job, in the test image with this checkout mounted read-only."""
    demo = ROOT / "jobs" / "demo-tiny.toml"  # renamed or gone: the test fails, it does not skip
    from runner.commands.staging import prepare_run_dir
    from runner.spec.load import load_spec

    loaded = load_spec(demo)
    run = prepare_run_dir(loaded, tmp_path / "run", "demo-1")
    spec = loaded.spec.model_copy(update={"run": loaded.spec.run.model_copy(update={"gpus": 0})})
    settings = _settings(engine, tmp_path, command=(*PYTHON, "-m", "runner.pipeline"))
    backend = DockerBackend(settings, "w-demo", client)
    outcome = _wait(backend, backend.start(Launch("demo-1", run.root, spec)), timeout_s=1500)
    assert outcome == Outcome(0, None), f"the pipeline failed in the container: {outcome.reason}"
    end = read_events(run.events)[-1]
    assert isinstance(end, JobEnd) and end.ok
