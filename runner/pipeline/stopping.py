"""Stop signals in the pipeline: a SIGTERM/SIGINT ends the job as stopped (exit 143), never as failed.

Signal handlers set the flag. While a stage runs (:meth:`StopSignal.interruptible`) the first signal also
interrupts it at once with :class:`Stopped`, as Ctrl-C's ``KeyboardInterrupt`` would: a child process (a
llama.cpp converter) gets the same signal from its process group, and whatever it did then, the stage
did not fail, the job was stopped. Training is the exception (:meth:`StopSignal.checkpointing`): the first
signal only sets the flag, the trainer saves a checkpoint at the end of its step and stops; a second
signal interrupts at once. Between stages (markers, the report) a signal only sets the flag and no
further stage starts.
"""

from __future__ import annotations

import signal
from collections.abc import Iterator
from contextlib import contextmanager
from types import FrameType

STOP_SIGNALS = (signal.SIGTERM, signal.SIGINT)
EXIT_STOPPED = 128 + signal.SIGTERM  # 143


class Stopped(BaseException):
    """The pipeline was asked to stop (a BaseException, so a stage's ``except Exception`` keeps out)."""


class StopSignal:
    """What the pipeline's signal handlers saw, and whether the running code may be interrupted."""

    def __init__(self) -> None:
        self.signum: int | None = None
        self._interruptible = False
        self._checkpointing = False

    @property
    def requested(self) -> bool:
        """A stop signal came."""
        return self.signum is not None

    def describe(self) -> str:
        """The signal's name, for the error event."""
        return signal.Signals(self.signum).name if self.signum is not None else "a signal"

    @contextmanager
    def installed(self) -> Iterator[StopSignal]:
        """Handle the stop signals while the block runs; the previous handlers come back after it."""
        previous = {sig: signal.signal(sig, self._on_signal) for sig in STOP_SIGNALS}
        try:
            yield self
        finally:
            for sig, handler in previous.items():
                signal.signal(sig, handler)

    def _on_signal(self, signum: int, frame: FrameType | None) -> None:
        again = self.requested
        self.signum = self.signum or signum
        if self._interruptible and (again or not self._checkpointing):
            raise Stopped

    @contextmanager
    def interruptible(self) -> Iterator[None]:
        """A stage runs: a stop signal interrupts it (one that came before interrupts it at once)."""
        self._interruptible = True
        try:
            self.raise_if_requested()
            yield
        finally:
            self._interruptible = False

    @contextmanager
    def checkpointing(self) -> Iterator[None]:
        """Training runs: the first signal only asks it to checkpoint and stop; a second interrupts."""
        self._checkpointing = True
        try:
            yield
        finally:
            self._checkpointing = False

    def raise_if_requested(self) -> None:
        """End the stage as stopped if a stop signal came (training, after its checkpoint)."""
        if self.requested:
            raise Stopped
