"""The tested GGUF: the one file the smoke test ran and Ollama gets (``smoke.gguf`` in the job file).

The pipeline names it in ``job_end`` (``tested_gguf``: its path in the run directory, ``tested_quant``:
its quant); the CLI and the TUI read it from there with :func:`tested_gguf`.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import PurePosixPath

from runner.core.events import JobEnd


@dataclass(frozen=True)
class TestedGguf:
    """A run's tested file."""

    __test__ = False  # not a pytest test class

    quant: str  # q4_k_m, q8_0, f16, ...
    path: str  # relative to the run directory

    @property
    def label(self) -> str:
        """The quant as llama.cpp's file names spell it: ``Q4_K_M``."""
        return self.quant.upper()

    @property
    def artifact_name(self) -> str:
        """The job's artifact name (``JobSpec.artifact_name``), read from the file's name
        ``gguf/<artifact name>-<quant>.gguf``: what ``commands.txt`` names the Ollama model after."""
        return PurePosixPath(self.path).stem.rsplit("-", 1)[0]


def tested_gguf(job_end: JobEnd | None) -> TestedGguf | None:
    """The tested file a ``job_end`` event names (ones written before tuneq 0.1's ``tested_gguf`` field
    have ``q4_k_m``, always the Q4_K_M file), or ``None``."""
    if job_end is None:
        return None
    if job_end.tested_gguf is not None and job_end.tested_quant is not None:
        return TestedGguf(job_end.tested_quant, job_end.tested_gguf)
    return TestedGguf("q4_k_m", job_end.q4_k_m) if job_end.q4_k_m is not None else None
