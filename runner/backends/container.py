"""How a job's container is configured and how its end reads: pure functions, unit-tested without an engine.

A job's container gets exactly: the run directory (read-write, at the same path as on the host, so paths
in events stay valid), the model cache (the host's Hugging Face cache at ``/cache/huggingface``), secrets
from the worker's environment, a shared-memory size, labels ``tuneq.job``/``tuneq.worker``, a name
derived from the job, and a device request for exactly the GPUs the worker assigned.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from docker.types import DeviceRequest, Mount

from runner.backends.base import Launch
from runner.secrets import SECRET_ENV_VARS

LABEL_JOB = "tuneq.job"
LABEL_WORKER = "tuneq.worker"
LABEL_RUN_DIR = "tuneq.run_dir"
CACHE_TARGET = "/cache/huggingface"
CUDA_OOM = "CUDA out of memory: lower per_device_train_batch_size or max_seq_length"
HOST_OOM = "host out of memory (container OOMKilled): lower per_device_train_batch_size or max_seq_length"
_OOM_MARKERS = ("CUDA out of memory", "OutOfMemoryError", "CUDA error: out of memory")
_SIGNALS = {137: "killed (SIGKILL)", 143: "terminated (SIGTERM)", 139: "segmentation fault (SIGSEGV)"}


def default_model_cache() -> Path:
    """The host's Hugging Face cache: ``$HF_HOME``, else ``${XDG_CACHE_HOME:-~/.cache}/huggingface``."""
    if home := os.environ.get("HF_HOME"):
        return Path(home)
    cache = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(cache) / "huggingface"


@dataclass(frozen=True)
class BindMount:
    """An extra bind mount (development and tests: a checkout or a virtual environment, read-only)."""

    source: Path
    target: str
    read_only: bool = True


@dataclass(frozen=True)
class DockerSettings:
    """The worker's container settings; a job's ``run.image`` overrides ``image``."""

    image: str = "tuneq:latest"
    base_url: str | None = None  # None: $DOCKER_HOST, else the engine's default socket
    shm_size: str = "16g"  # PyTorch data loaders need more than the engines' 64 MB default
    model_cache: Path = field(default_factory=default_model_cache)
    network: str | None = None  # None: the engine's default (jobs may download models)
    user: str | None = None  # None: the worker's uid:gid, so run files stay the worker's
    command: tuple[str, ...] = ("python", "-m", "runner.pipeline")  # the run directory is appended
    extra_mounts: tuple[BindMount, ...] = ()


def container_name(job_id: str) -> str:
    """``tuneq-<job id>`` with characters Docker refuses in names replaced by ``-``."""
    return "tuneq-" + re.sub(r"[^A-Za-z0-9_.-]", "-", job_id)


def device_requests(gpus: Sequence[int]) -> list[DeviceRequest]:
    """One NVIDIA device request for exactly ``gpus`` (host indices); none for a CPU job."""
    if not gpus:
        return []
    return [DeviceRequest(driver="nvidia", device_ids=[str(g) for g in gpus], capabilities=[["gpu"]])]


def container_env(launch: Launch, worker_env: Mapping[str, str]) -> dict[str, str]:
    """The container's environment: cache and home paths, the worker's secrets, then the launch's env."""
    env = {"HF_HOME": CACHE_TARGET, "HOME": "/tmp", "TUNEQ_HOME": "/tmp/tuneq", "PYTHONUNBUFFERED": "1"}
    env.update({name: value for name in SECRET_ENV_VARS if (value := worker_env.get(name))})
    env.update(launch.env)
    return env


def create_kwargs(
    launch: Launch, settings: DockerSettings, worker_id: str, worker_env: Mapping[str, str]
) -> dict[str, Any]:
    """Arguments of ``client.containers.create`` for one job."""
    run_dir = str(launch.run_dir.resolve())
    mounts = [
        Mount(target=run_dir, source=run_dir, type="bind"),
        Mount(target=CACHE_TARGET, source=str(settings.model_cache.resolve()), type="bind"),
        *(
            Mount(target=m.target, source=str(m.source), type="bind", read_only=m.read_only)
            for m in settings.extra_mounts
        ),
    ]
    kwargs: dict[str, Any] = {
        "image": launch.spec.run.image or settings.image,
        "command": [*settings.command, run_dir],
        "name": container_name(launch.job_id),
        "labels": {LABEL_JOB: launch.job_id, LABEL_WORKER: worker_id, LABEL_RUN_DIR: run_dir},
        "environment": container_env(launch, worker_env),
        "mounts": mounts,
        "working_dir": run_dir,
        "shm_size": settings.shm_size,
        "init": True,  # an init as PID 1 forwards SIGTERM to the pipeline (PID 1 ignores it by default)
        "user": settings.user or f"{os.getuid()}:{os.getgid()}",
        "device_requests": device_requests(launch.gpus),
    }
    if settings.network:
        kwargs["network_mode"] = settings.network
    return kwargs


def exit_reason(
    state: Mapping[str, Any], log_tail: Sequence[str], pipeline_reason: str | None = None
) -> str | None:
    """Why a container ended, from its ``State``, the last log lines and the pipeline's ``job_end`` reason.

    ``None`` for a clean exit. Out-of-memory comes first, then the pipeline's reason, then the engine's
    error, then the exit code (or signal) with the last log line.
    """
    code = int(state.get("ExitCode", -1))
    if code == 0 and not state.get("OOMKilled"):
        return None
    if any(marker in line for line in [*log_tail, pipeline_reason or ""] for marker in _OOM_MARKERS):
        return CUDA_OOM
    if state.get("OOMKilled"):
        return HOST_OOM
    if pipeline_reason:
        return pipeline_reason
    if state.get("Error"):
        return f"container error: {state['Error']}"
    last = next((line.strip() for line in reversed(log_tail) if line.strip()), "")
    head = _SIGNALS.get(code, f"exit code {code}")
    return f"{head}: {last[:300]}" if last else head
