"""The host's GPUs, for one-job-per-GPU scheduling: the configured indices, else what ``nvidia-smi`` lists."""

from __future__ import annotations

import shutil
import subprocess
from collections.abc import Iterable, Sequence
from dataclasses import dataclass


class GpuError(RuntimeError):
    """``nvidia-smi`` exists but fails (driver not loaded, GPU fallen off the bus): a one-line message."""


@dataclass(frozen=True)
class Gpu:
    """One GPU by host index (what a container's device request names)."""

    index: int
    name: str = "configured"
    memory_mib: int | None = None


def discover(configured: Sequence[int] | None = None) -> list[Gpu]:
    """The GPUs this worker may use: ``configured`` when given, else ``nvidia-smi``'s list ([] without it)."""
    if configured is not None:
        return [Gpu(index) for index in sorted(set(configured))]
    exe = shutil.which("nvidia-smi")
    if exe is None:
        return []
    try:
        done = subprocess.run(
            [exe, "--query-gpu=index,name,memory.total", "--format=csv,noheader,nounits"],
            capture_output=True,
            text=True,
            timeout=30,
            check=False,
        )
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise GpuError(f"nvidia-smi did not answer: {exc}") from None
    if done.returncode != 0:
        lines = (done.stderr or done.stdout).strip().splitlines()
        raise GpuError(f"nvidia-smi failed: {lines[0] if lines else f'exit code {done.returncode}'}")
    return parse_nvidia_smi(done.stdout)


def parse_nvidia_smi(text: str) -> list[Gpu]:
    """Parse ``nvidia-smi --query-gpu=index,name,memory.total --format=csv,noheader,nounits``."""
    gpus = []
    for line in text.strip().splitlines():
        index, name, memory = (part.strip() for part in line.split(","))
        gpus.append(Gpu(int(index), name, int(memory) if memory.isdigit() else None))
    return gpus


def pick(free: Iterable[int], count: int) -> tuple[int, ...] | None:
    """``count`` GPUs from ``free``, lowest indices first; ``None`` while fewer are free (the job waits)."""
    ordered = sorted(free)
    return tuple(ordered[:count]) if len(ordered) >= count else None
