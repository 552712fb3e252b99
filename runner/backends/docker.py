"""The ``docker`` backend: each job's pipeline in its own container, through the Docker Engine API.

Works with dockerd and with ``podman system service`` (tests). The container runs the same
``python -m runner.pipeline <run_dir>`` as the local backend; events arrive through the mounted run
directory, and a thread per container streams its output (secrets redacted) into ``log.txt``. A
container is removed as soon as its outcome is read (``poll``), when it is stopped (``stop``), or when a
restarted worker polls it: none is left behind, nor its secret files. Engine failures
surface as one-line :class:`BackendError` messages.
"""

from __future__ import annotations

import math
import os
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import docker
import requests
from docker.errors import DockerException, ImageNotFound, NotFound
from docker.models.containers import Container

from runner.backends.base import Launch, Outcome
from runner.backends.container import (
    LABEL_RUN_DIR,
    LABEL_SECRETS,
    DockerSettings,
    container_secrets,
    create_kwargs,
    exit_reason,
    remove_secret_files,
    write_secret_files,
)
from runner.backends.errors import BackendError
from runner.backends.logcopy import MARKER, LogCopy
from runner.core.events import JobEnd, read_events
from runner.core.rundir import RunDir

_LIVE = ("running", "paused", "restarting")  # "created": the worker stopped between create and start
_NO_IMAGE = "image {!r} is not on the engine: build it with `just image`"
_TAIL_LINES = 40
_INSPECT_EVERY_S = 5.0  # while a container's output is still being followed it runs: inspect it rarely


def connect(base_url: str | None = None) -> docker.DockerClient:
    """A client whose engine answered a ping, or a :class:`BackendError` saying where none answered."""
    where = base_url or os.environ.get("DOCKER_HOST") or "the default Docker socket"
    try:
        client = docker.DockerClient(base_url=base_url) if base_url else docker.from_env()
        client.ping()
    except (DockerException, requests.RequestException) as exc:
        raise BackendError(
            f"no container engine answers at {where} ({_short(exc)}): start Docker, or "
            "`podman system service` and set DOCKER_HOST"
        ) from None
    return client


class DockerBackend:
    """Runs jobs in containers labelled ``tuneq.job=<id>``, ``tuneq.worker=<worker_id>``, ``tuneq.queue``."""

    name = "docker"
    reattaches = False

    def __init__(
        self, settings: DockerSettings, worker_id: str, client: docker.DockerClient | None = None
    ) -> None:
        self.settings = settings
        self.worker_id = worker_id
        self._client = client
        self._logs: dict[str, LogCopy] = {}
        self._ended: dict[str, Outcome] = {}
        self._inspected: dict[str, float] = {}

    @property
    def client(self) -> docker.DockerClient:
        """The engine client, connected on first use."""
        if self._client is None:
            self._client = connect(self.settings.base_url)
        return self._client

    def start(self, launch: Launch) -> str:
        """Create and start the job's container; return its id."""
        if len(launch.gpus) < launch.spec.run.gpus:
            raise BackendError(
                f"job {launch.job_id} needs {launch.spec.run.gpus} GPU(s), {len(launch.gpus)} assigned"
            )
        secrets_dir = write_secret_files(container_secrets(os.environ))
        try:
            kwargs = create_kwargs(launch, self.settings, self.worker_id, os.environ, secrets_dir)
            self._remove_stale(kwargs["name"])
            with _engine_errors(f"creating the container of job {launch.job_id}"):
                container = self.client.containers.create(**kwargs)
        except BaseException as exc:
            remove_secret_files(secrets_dir)
            if isinstance(exc, ImageNotFound):
                raise BackendError(_NO_IMAGE.format(kwargs["image"])) from None
            raise
        try:
            with _engine_errors(f"starting the container of job {launch.job_id}"):
                container.start()
        except BackendError:
            _remove(container)
            raise
        handle: str = container.id or ""
        self._logs[handle] = LogCopy(container, RunDir(launch.run_dir).log, launch.env.values())
        self._logs[handle].follow()
        return handle

    def poll(self, handle: str) -> Outcome | None:
        """``None`` while the container lives; else its outcome (the container is then removed)."""
        if handle in self._ended:
            return self._ended[handle]
        copy = self._logs.get(handle)
        now = time.monotonic()
        if copy is not None and copy.following and now - self._inspected.get(handle, 0.0) < _INSPECT_EVERY_S:
            return None
        self._inspected[handle] = now
        container = self._get(handle)
        if container is None:
            return self._ended.setdefault(handle, Outcome(-1, "the container was removed outside tuneq"))
        if container.status in _LIVE:
            if copy is None or copy.broken:  # re-attached after a restart, or the engine cut the stream
                self._logs[handle] = LogCopy.reattached(container, _log_path(container))
                self._logs[handle].follow()
            return None
        return self._finish(container)

    def stop(self, handle: str, grace_s: float = 10.0) -> None:
        """Stop the container (SIGTERM, SIGKILL after ``grace_s``), copy its last logs, remove it."""
        container = self._get(handle)
        if container is None:
            return
        with _engine_errors("stopping a container"):
            if container.status in _LIVE:
                container.stop(timeout=math.ceil(grace_s))
            container.reload()
        self._finish(container, reason="stopped")

    def _get(self, handle: str) -> Container | None:
        try:
            with _engine_errors("inspecting a container"):
                container: Container = self.client.containers.get(handle)
        except NotFound:
            return None
        return container

    def _remove_stale(self, name: str) -> None:
        """Remove a dead container left with this name (a crash before reaping); refuse a live one."""
        stale = self._get(name)
        if stale is None:
            return
        if stale.status in _LIVE:
            raise BackendError(f"container {name} is already running: cancel that job first")
        _remove(stale)

    def _finish(self, container: Container, reason: str | None = None) -> Outcome:
        """Finish copying the output, read the outcome, remove the container."""
        handle = container.id or ""
        log = _log_path(container)
        copy = self._logs.pop(handle, None)
        self._inspected.pop(handle, None)
        if copy is None:
            LogCopy.reattached(container, log).once()
        else:
            copy.join()
        state = container.attrs.get("State", {})
        if container.status == "created":
            outcome = Outcome(-1, reason or "the container was created but never started")
        else:
            said = _pipeline_reason(RunDir(log.parent).events, str(state.get("StartedAt", "")))
            outcome = Outcome(int(state.get("ExitCode", -1)), reason or exit_reason(state, _tail(log), said))
        _remove(container)
        self._ended[handle] = outcome
        return outcome


def _log_path(container: Container) -> Path:
    return RunDir(Path(container.labels.get(LABEL_RUN_DIR, "/nonexistent"))).log


def _pipeline_reason(events: Path, started_at: str) -> str | None:
    """The reason of this attempt's failed ``job_end`` event, if the pipeline wrote one."""
    for event in reversed(read_events(events)):
        if event.t < started_at[:23]:
            return None
        if isinstance(event, JobEnd) and not event.ok and event.reason:
            return event.reason
    return None


def _tail(log: Path) -> list[str]:
    """The pipeline's last lines in ``log`` (tuneq's own marker lines left out)."""
    try:
        with log.open("rb") as handle:
            handle.seek(max(0, log.stat().st_size - 16_384))
            lines = handle.read().decode("utf-8", "replace").splitlines()
    except OSError:
        return []
    return [line for line in lines if not line.startswith(MARKER)][-_TAIL_LINES:]


def _remove(container: Container) -> None:
    """Remove the container, then its secret files."""
    try:
        container.remove(force=True, v=True)
    except NotFound:
        pass
    except (DockerException, requests.RequestException) as exc:
        raise BackendError(f"could not remove container {container.name}: {_short(exc)}") from None
    remove_secret_files(container.labels.get(LABEL_SECRETS))


@contextmanager
def _engine_errors(doing: str) -> Iterator[None]:
    """Turn engine and transport errors into a one-line :class:`BackendError` (``NotFound`` passes)."""
    try:
        yield
    except NotFound:
        raise
    except (DockerException, requests.RequestException) as exc:
        raise BackendError(f"container engine error while {doing}: {_short(exc)}") from None


def _short(exc: Exception) -> str:
    text = getattr(exc, "explanation", None) or str(exc) or type(exc).__name__
    return " ".join(str(text).split())[:300]
