"""What runs on a cluster node: one :class:`JobRunner` (a Ray actor) per job attempt.

The actor gets the job's inputs in chunks (``job.toml``, ``job.json``, ``input/``, and the checkpoints the
head holds from an earlier attempt), writes them into a run directory on the node's own disk
(``$TUNEQ_NODE_DIR``, else ``<state dir>/node-runs``), and runs the pipeline there with the node's local
or docker backend, as the head's :class:`~runner.backends.base.Launch` says (its spec, environment and
GPUs: :func:`node_gpus`). The head reads everything back through the actor's methods: new event and log
bytes, complete checkpoints, and at the end the run directory's files, each in chunks with its sha256.
:mod:`runner.cluster.backend` makes the class an actor; Ray is imported only inside it, on the node.

A node cut off from the cluster (it has not reached the GCS for :data:`CUT_OFF_S`) stops its pipeline or
container: by then the head has counted the node lost and requeued the job elsewhere.
"""

from __future__ import annotations

import os
import shutil
import socket
import sys
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path

from runner.backends.base import ANY_GPU, Backend, Launch, Outcome, pipeline_command
from runner.backends.errors import BackendError
from runner.backends.factory import make_backend
from runner.backends.local import LocalBackend
from runner.backends.supervise import Supervised, supervise
from runner.cluster.address import split_address
from runner.core.checksum import sha256_file
from runner.core.paths import state_dir
from runner.core.rundir import LAYOUT, RunDir

NODE_DIR_ENV = "TUNEQ_NODE_DIR"
CHUNK_BYTES = 8 << 20  # one transfer call: small enough for Ray's inline objects to stay cheap
STAYS_ON_NODE = (
    str(LAYOUT.merged),
)  # the 16-bit merged model: large, and nothing downstream of ship/ needs it
CUT_OFF_S = 20.0  # the head counts a node lost after 15 s out of reach (or when Ray declares it dead)


@dataclass(frozen=True)
class FileInfo:
    """A file of a run directory: its path inside it, size and sha256."""

    path: str
    size: int
    sha256: str


@dataclass(frozen=True)
class Update:
    """What a node has new since the head's last read: event and log bytes, checkpoints, and the end."""

    events: bytes
    log: bytes
    checkpoints: tuple[str, ...]  # complete ``checkpoint-N`` directories present now
    outcome: Outcome | None


def node_gpus(wanted: tuple[int, ...], ray_ids: Sequence[int | str]) -> tuple[int, ...]:
    """The Launch's GPUs as this node's device indices: each ANY_GPU becomes one of the GPUs Ray gave the
    actor. The one place Ray's ids are read: they are the node's device indices, or entries of the
    ``CUDA_VISIBLE_DEVICES`` its raylet was started with (both what the pipeline's own
    ``CUDA_VISIBLE_DEVICES`` and a container's device request name)."""
    why = f"Ray gave this node's actor GPUs {list(ray_ids)} for a job asking for {len(wanted)}"
    try:
        given = sorted(int(g) for g in ray_ids)
    except ValueError:
        raise BackendError(
            f"{why}: start the node's raylet with numeric CUDA_VISIBLE_DEVICES (device indices, not UUIDs)"
        ) from None
    if wanted.count(ANY_GPU) > len(given):
        raise BackendError(why)
    free = iter(given)
    return tuple(next(free) if g == ANY_GPU else g for g in wanted)


def node_runs_dir() -> Path:
    """Where this node keeps the run directories of the jobs it runs."""
    if folder := os.environ.get(NODE_DIR_ENV):
        return Path(folder)
    return state_dir() / "node-runs"


def read_chunk(path: Path, offset: int, size: int = CHUNK_BYTES) -> bytes:
    """Up to ``size`` bytes of ``path`` from ``offset``."""
    with path.open("rb") as handle:
        handle.seek(offset)
        return handle.read(size)


def complete_lines(path: Path, offset: int, limit: int = CHUNK_BYTES) -> bytes:
    """The complete lines of ``path`` from ``offset`` (at most about ``limit`` bytes; a torn line waits)."""
    if not path.exists():
        return b""
    data = read_chunk(path, offset, limit)
    return data[: data.rfind(b"\n") + 1]


def complete_checkpoints(checkpoints: Path) -> tuple[str, ...]:
    """The ``checkpoint-N`` directories the trainer finished writing (``trainer_state.json`` comes last)."""
    if not checkpoints.is_dir():
        return ()
    found = [p.name for p in checkpoints.glob("checkpoint-*") if (p / "trainer_state.json").exists()]
    return tuple(sorted(found, key=lambda name: int(name.rpartition("-")[2] or 0)))


def manifest(
    root: Path, under: str = "", skip: tuple[str, ...] = (), *, nested: bool = True
) -> list[FileInfo]:
    """Every regular file below ``root / under`` (``nested=False``: directly in it) but the ``skip``
    folders, with size and sha256."""
    base = root / under
    files = []
    for path in sorted(base.rglob("*") if nested else base.glob("*")) if base.exists() else []:
        rel = path.relative_to(root)
        if rel.parts[0] in skip or not path.is_file() or path.is_symlink():
            continue
        files.append(FileInfo(rel.as_posix(), path.stat().st_size, sha256_file(path)))
    return files


class JobRunner:
    """One job attempt on this node (made a detached, named Ray actor by the head)."""

    def __init__(self, job_id: str, name: str, head_run_dir: str) -> None:
        self.job_id = job_id
        self.head_run_dir = head_run_dir  # lets a restarted head worker find where the job's files go
        self.run = RunDir(node_runs_dir() / name)
        shutil.rmtree(self.run.root, ignore_errors=True)
        self.run.root.mkdir(parents=True)
        self.pipeline: Supervised | None = None

    def receive(self, rel: str, offset: int, data: bytes) -> None:
        """Write one chunk of an input file (the head sends them in order, before :meth:`start`)."""
        path = self._inside(rel)
        path.parent.mkdir(parents=True, exist_ok=True)
        with path.open("r+b" if offset else "wb") as out:
            out.seek(offset)
            out.write(data)

    def start(self, launch: Launch, pipeline_cmd: list[str] | None) -> dict[str, str]:
        """Start the pipeline on the inputs received as the head's ``launch`` says (its spec, environment
        and GPUs, Ray's devices in place of ANY_GPU); where it runs (node id and address) and its pid."""
        import ray  # on the node, inside the actor: Ray is there

        backend: Backend
        if launch.spec.run.backend == "local":  # the head's TUNEQ_PIPELINE_CMD decides, never the node's
            backend = LocalBackend(pipeline_cmd or pipeline_command(sys.executable))
        else:
            backend = make_backend(launch.spec.run.backend, f"cluster-{self.job_id}")
        here = replace(launch, run_dir=self.run.root, gpus=node_gpus(launch.gpus, ray.get_gpu_ids()))
        self.pipeline = supervise(backend, here)
        gcs = ray.get_runtime_context().gcs_address
        threading.Thread(target=self._stop_when_cut_off, args=(gcs,), name="cut-off", daemon=True).start()
        node_id = ray.get_runtime_context().get_node_id()
        return {"node_id": node_id, "node_ip": ray.util.get_node_ip_address(), "pid": self.pipeline.handle}

    def _stop_when_cut_off(self, gcs: str) -> None:
        """Stop the pipeline once the GCS at ``gcs`` (``HOST:PORT``) has been out of reach for
        :data:`CUT_OFF_S`: the job then runs elsewhere, and this copy must not run on beside it."""
        where = split_address(gcs)
        reached = time.monotonic()
        while self.pipeline is not None and self.pipeline.outcome is None:
            try:
                socket.create_connection(where, timeout=2).close()
                reached = time.monotonic()
            except OSError:
                if time.monotonic() - reached > CUT_OFF_S:
                    self.stop(grace_s=10)
                    return
            time.sleep(1)

    def head_dir(self) -> str:
        """The head's run directory of this job."""
        return self.head_run_dir

    def update(self, events_offset: int, log_offset: int) -> Update:
        """New events and log bytes from the given offsets, the complete checkpoints, and the end if come."""
        outcome = self.pipeline.poll() if self.pipeline is not None else None
        # read after polling: an ended pipeline's last events are in the files by now
        return Update(
            complete_lines(self.run.events, events_offset),
            read_chunk(self.run.log, log_offset) if self.run.log.exists() else b"",
            complete_checkpoints(self.run.checkpoints),
            outcome,
        )

    def stop(self, grace_s: float) -> None:
        """Stop the pipeline (SIGTERM to its group, SIGKILL after ``grace_s``); idempotent."""
        if self.pipeline is not None:
            self.pipeline.stop(grace_s=grace_s)
            self.pipeline.poll()

    def files(self, under: str = "", nested: bool = True) -> list[FileInfo]:
        """The run directory's files below ``under`` (all but what stays on the node)."""
        return manifest(self.run.root, under, STAYS_ON_NODE, nested=nested)

    def chunk(self, rel: str, offset: int) -> bytes:
        """A chunk of one of the run directory's files."""
        return read_chunk(self._inside(rel), offset)

    def _inside(self, rel: str) -> Path:
        path = (self.run.root / rel).resolve()
        if not path.is_relative_to(self.run.root.resolve()):
            raise ValueError(f"{rel} is outside the run directory")
        return path

    def remove(self) -> None:
        """Delete the node's copy of the run directory (the head holds what it needs)."""
        shutil.rmtree(self.run.root, ignore_errors=True)
