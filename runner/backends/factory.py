"""A worker's backends by name: ``make_backend("docker", worker_id, DockerSettings(image=...))``."""

from __future__ import annotations

from typing import TYPE_CHECKING

from runner.backends.base import Backend
from runner.backends.errors import BackendError
from runner.backends.local import LocalBackend

if TYPE_CHECKING:
    from runner.backends.container import DockerSettings

BACKENDS = ("local", "docker")


def make_backend(name: str, worker_id: str, docker: DockerSettings | None = None) -> Backend:
    """The backend a job's ``run.backend`` names; the docker one connects to its engine on first use."""
    if name == "local":
        return LocalBackend()
    if name == "docker":  # the docker SDK is imported only where a worker asks for this backend
        from runner.backends.container import DockerSettings
        from runner.backends.docker import DockerBackend

        return DockerBackend(docker or DockerSettings(), worker_id)
    raise BackendError(f"unknown backend {name!r}: use one of {', '.join(BACKENDS)}")
