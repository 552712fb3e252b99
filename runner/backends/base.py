"""The small interface every backend offers the worker: start, poll and stop.

A backend runs exactly one command per job: :func:`pipeline_command` and the run directory (same entry
point in a local process, in a container and on a cluster node). The pipeline writes events to ``<run_dir>/events.jsonl`` and ends
with a ``job_end`` event; its stdout/stderr go to ``<run_dir>/log.txt``. Handles (a pid, a container id)
are strings the worker may store as hints; live objects never leave the backend. A handle of the form
``ID@NODE`` names the machine the job runs on (the cluster backend, :mod:`runner.cluster.backend`).

Which GPUs a job gets has one meaning end to end: :attr:`Launch.gpus`, the device indices of the machine
that runs the pipeline (what ``CUDA_VISIBLE_DEVICES`` and a container's device request name). A worker on
a host fills them from its own GPUs. A cluster head cannot name a node's devices: it gives :data:`ANY_GPU`
once per GPU, the cluster backend asks Ray for that many, and the node puts the devices Ray gave it in
their place (:func:`runner.cluster.node.node_gpus`, the one place Ray's ids are read).
"""

from __future__ import annotations

import os
import shlex
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

from runner.spec.model import JobSpec

ANY_GPU = -1  # a GPU the machine that runs the job picks (a cluster head leaves the choice to Ray)

PIPELINE_CMD_ENV = "TUNEQ_PIPELINE_CMD"


def pipeline_command(python: str | None = None) -> list[str]:
    """The pipeline's command line, the run directory to be appended: ``PYTHON -m runner.pipeline``.

    ``python``: the interpreter that runs it (a container image's ``python``). Without one, this
    interpreter, unless ``TUNEQ_PIPELINE_CMD`` (split like a shell line) replaces the whole command: the
    tests' stand-in pipeline.
    """
    if python is None and (override := os.environ.get(PIPELINE_CMD_ENV)):
        return shlex.split(override)
    return [python or sys.executable, "-m", "runner.pipeline"]


@dataclass(frozen=True)
class Launch:
    """What a backend needs to start one job."""

    job_id: str
    run_dir: Path
    spec: JobSpec
    gpus: tuple[int, ...] = ()  # device indices on the machine that runs it, or ANY_GPU (module docstring)
    env: dict[str, str] = field(default_factory=dict, repr=False)  # secrets pass through, never stored


@dataclass(frozen=True)
class Outcome:
    """How a finished job's process ended: exit code and, where known, why (``OOMKilled``, a signal)."""

    exit_code: int
    reason: str | None = None
    interrupted: bool = False  # its machine went away or its files did not come back: requeued, not failed
    not_started: bool = False  # no machine had room for it in time: queued again, no retry spent


class Backend(Protocol):
    """Runs pipelines. Implementations: ``local`` (child process group), ``docker`` (a container), ``ray``
    (either of them on a cluster node)."""

    name: str
    reattaches: bool  # a worker that did not start a job may follow it on (else it stops it, to resume it)

    def start(self, launch: Launch) -> str:
        """Start the job's pipeline; return a handle (pid or container id)."""
        ...

    def locate(self, handle: str) -> str:
        """The handle to record: ``handle``, with the machine it runs on once that is known (``ID@NODE``)."""
        ...

    def poll(self, handle: str) -> Outcome | None:
        """``None`` while the job runs, else how it ended."""
        ...

    def stop(self, handle: str, grace_s: float = 10.0) -> None:
        """Stop the job: SIGTERM (or container stop), then kill after ``grace_s``; idempotent."""
        ...
