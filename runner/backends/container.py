"""How a job's container is configured and how its end reads: pure functions, unit-tested without an engine.

A job's container gets exactly: the run directory (read-write, at the same path as on the host, so paths
in events stay valid), a local base model's directory (read-only, at the same path), the model cache (the
host's Hugging Face cache at ``/cache/huggingface``), secrets from the worker's environment, a shared-memory
size, labels ``tuneq.job``/``tuneq.worker``/``tuneq.queue``, a name derived from the queue and the job, and
a device request for exactly the GPUs the worker assigned.

- The queue is a short hash of the state directory: two queues (two ``TUNEQ_HOME``) on one engine never
  share a container name, and each finds and reaps only its own containers.
- Secrets never enter the container's environment, which ``docker inspect`` shows: each is a file in a
  private directory (0700, files 0600) mounted read-only at ``/run/tuneq-secrets``, named by
  ``<NAME>_FILE``; the pipeline reads them at start (:func:`runner.core.secrets.load_secret_files`).
- The model cache is mounted read-only, with the hub offline, when the job downloads nothing: a built-in
  or local base, or a hub model already complete in the cache, and local data (or ``HF_HUB_OFFLINE``).
  The hub cache is then ``/cache/huggingface/hub`` and ``HF_HOME`` a scratch directory in the container.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import re
import tempfile
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from docker.types import DeviceRequest, Mount

from runner.backends.base import Launch, pipeline_command
from runner.core.failures import CUDA_OOM, HOST_OOM, is_out_of_memory
from runner.core.paths import state_dir
from runner.core.secrets import SECRET_ENV_VARS
from runner.dataset.read import is_local_source
from runner.models.resolve import base_files, is_builtin
from runner.spec.model import JobSpec

LABEL_JOB = "tuneq.job"
LABEL_WORKER = "tuneq.worker"
LABEL_QUEUE = "tuneq.queue"
LABEL_RUN_DIR = "tuneq.run_dir"
LABEL_SECRETS = "tuneq.secrets"
CACHE_TARGET = "/cache/huggingface"
SECRETS_TARGET = "/run/tuneq-secrets"
SECRETS_PREFIX = "tuneq-secrets-"
SCRATCH_HF_HOME = "/tmp/huggingface"
_SIGNALS = {137: "killed (SIGKILL)", 143: "terminated (SIGTERM)", 139: "segmentation fault (SIGSEGV)"}


def default_model_cache() -> Path:
    """The host's Hugging Face cache: ``$HF_HOME``, else ``${XDG_CACHE_HOME:-~/.cache}/huggingface``."""
    if home := os.environ.get("HF_HOME"):
        return Path(home)
    cache = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(cache) / "huggingface"


def queue_id(state: Path | None = None) -> str:
    """A short id of the queue: a hash of its state directory (``TUNEQ_HOME``) as an absolute path."""
    return hashlib.sha256(str((state or state_dir()).resolve()).encode()).hexdigest()[:10]


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
    queue: str = field(default_factory=queue_id)  # the queue's id, in names and labels
    command: tuple[str, ...] = tuple(pipeline_command("python"))  # the image's; the run directory is appended
    extra_mounts: tuple[BindMount, ...] = ()


def container_name(queue: str, job_id: str) -> str:
    """``tuneq-<queue>-<job id>`` with characters Docker refuses in names replaced by ``-``."""
    return f"tuneq-{queue}-" + re.sub(r"[^A-Za-z0-9_.-]", "-", job_id)


def container_secrets(worker_env: Mapping[str, str]) -> dict[str, str]:
    """The secrets the container needs: those set in the worker's environment."""
    return {name: value for name in SECRET_ENV_VARS if (value := worker_env.get(name))}


def write_secret_files(secrets: Mapping[str, str]) -> Path | None:
    """A private directory (0700) holding one 0600 file per secret, outside any run directory; ``None``
    when there is no secret. :func:`remove_secret_files` deletes it when the job ends."""
    if not secrets:
        return None
    folder = Path(tempfile.mkdtemp(prefix=SECRETS_PREFIX))
    for name, value in secrets.items():
        fd = os.open(folder / name, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as handle:
            handle.write(value)
    return folder


def remove_secret_files(folder: str | Path | None) -> None:
    """Delete a directory made by :func:`write_secret_files` (anything else is left alone)."""
    if not folder or not Path(folder).name.startswith(SECRETS_PREFIX):
        return
    for file in Path(folder).glob("*"):
        file.unlink(missing_ok=True)
    with contextlib.suppress(OSError):
        Path(folder).rmdir()


def downloads(spec: JobSpec, run_dir: Path, worker_env: Mapping[str, str], model_cache: Path) -> bool:
    """Whether the job may download into the model cache: its data or its base model is on the hub and
    not already complete in the cache, and the worker is not offline."""
    if worker_env.get("HF_HUB_OFFLINE", "").lower() in ("1", "true", "yes"):
        return False
    if not is_local_source(spec.data.source, run_dir):
        return True
    base = spec.model.base
    if is_builtin(base) or local_base(spec) is not None:
        return False
    return not _cached_complete(base, spec.model.revision, model_cache / "hub")


def local_base(spec: JobSpec) -> Path | None:
    """The base model's directory when ``model.base`` is a local path (mounted read-only into the container
    at the same path, as submit resolved it)."""
    base = spec.model.base
    return Path(base) if Path(base).is_absolute() and Path(base).is_dir() else None


def _cached_complete(repo: str, revision: str | None, hub_cache: Path) -> bool:
    """Whether a hub model's snapshot in ``hub_cache`` has its config and every weight file."""
    snapshot = base_files(repo, revision, cache_dir=hub_cache)
    if snapshot is None:  # not cached, or no hub client on this worker to tell: let the job download
        return False
    index = snapshot / "model.safetensors.index.json"
    if index.exists():
        shards = set(json.loads(index.read_text()).get("weight_map", {}).values())
        return bool(shards) and all((snapshot / shard).exists() for shard in shards)
    return any(snapshot.glob("*.safetensors")) or any(snapshot.glob("*.bin"))


def device_requests(gpus: Sequence[int]) -> list[DeviceRequest]:
    """One NVIDIA device request for exactly ``gpus`` (host indices); none for a CPU job."""
    if not gpus:
        return []
    return [DeviceRequest(driver="nvidia", device_ids=[str(g) for g in gpus], capabilities=[["gpu"]])]


def container_env(
    launch: Launch, secret_names: Iterable[str] = (), *, cache_read_only: bool = False
) -> dict[str, str]:
    """The container's environment: cache and home paths, where the secrets are mounted (never their
    values), then the launch's env but its secrets (they go as files)."""
    env = {"HF_HOME": CACHE_TARGET, "HOME": "/tmp", "TUNEQ_HOME": "/tmp/tuneq", "PYTHONUNBUFFERED": "1"}
    if cache_read_only:
        env |= {"HF_HOME": SCRATCH_HF_HOME, "HF_HUB_CACHE": f"{CACHE_TARGET}/hub", "HF_HUB_OFFLINE": "1"}
    env.update({f"{name}_FILE": f"{SECRETS_TARGET}/{name}" for name in secret_names})
    env.update({name: value for name, value in launch.env.items() if name not in SECRET_ENV_VARS})
    return env


def create_kwargs(
    launch: Launch,
    settings: DockerSettings,
    worker_id: str,
    worker_env: Mapping[str, str],
    secrets_dir: Path | None = None,
) -> dict[str, Any]:
    """Arguments of ``client.containers.create`` for one job (``secrets_dir``: from
    :func:`write_secret_files`)."""
    run_dir = str(launch.run_dir.resolve())
    read_only = not downloads(launch.spec, Path(launch.run_dir), worker_env, settings.model_cache)
    mounts = [
        Mount(target=run_dir, source=run_dir, type="bind"),
        Mount(
            target=CACHE_TARGET, source=str(settings.model_cache.resolve()), type="bind", read_only=read_only
        ),
        *(
            Mount(target=m.target, source=str(m.source), type="bind", read_only=m.read_only)
            for m in settings.extra_mounts
        ),
        *(
            [Mount(target=str(base), source=str(base), type="bind", read_only=True)]
            if (base := local_base(launch.spec)) is not None
            else []
        ),
    ]
    labels = {
        LABEL_JOB: launch.job_id,
        LABEL_WORKER: worker_id,
        LABEL_QUEUE: settings.queue,
        LABEL_RUN_DIR: run_dir,
    }
    secret_names = sorted(p.name for p in secrets_dir.iterdir()) if secrets_dir else []
    if secrets_dir is not None:
        mounts.append(Mount(target=SECRETS_TARGET, source=str(secrets_dir), type="bind", read_only=True))
        labels[LABEL_SECRETS] = str(secrets_dir)
    kwargs: dict[str, Any] = {
        "image": launch.spec.run.image or settings.image,
        "command": [*settings.command, run_dir],
        "name": container_name(settings.queue, launch.job_id),
        "labels": labels,
        "environment": container_env(launch, secret_names, cache_read_only=read_only),
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
    if any(is_out_of_memory(line) for line in [*log_tail, pipeline_reason or ""]):
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
