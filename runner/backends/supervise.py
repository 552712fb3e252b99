"""One pipeline under supervision: started through a backend, polled until it ends, stopped with a grace
period. The worker (each job it runs), ``tuneq run`` (one job in the foreground) and a cluster node (the
job its actor runs) all hold a :class:`Supervised`.

The first end a poll reports is kept: a backend tells it once (the local backend reaps its child then; a
later poll of the same pid could only say "exit status unknown").
"""

from __future__ import annotations

from dataclasses import dataclass

from runner.backends.base import Backend, Launch, Outcome


@dataclass
class Supervised:
    """A pipeline ``backend`` runs under ``handle`` (started here, or found running by its stored handle)."""

    backend: Backend
    handle: str
    outcome: Outcome | None = None

    def poll(self) -> Outcome | None:
        """``None`` while it runs, else how it ended (the first answer, kept)."""
        if self.outcome is None:
            self.outcome = self.backend.poll(self.handle)
        return self.outcome

    def stop(self, grace_s: float) -> None:
        """SIGTERM (a container stop), SIGKILL after ``grace_s``; nothing once it ended. :meth:`poll` tells
        how it ended."""
        if self.outcome is None:
            self.backend.stop(self.handle, grace_s=grace_s)


def supervise(backend: Backend, launch: Launch) -> Supervised:
    """Start ``launch``'s pipeline through ``backend`` (:class:`runner.backends.errors.BackendError` or an
    ``OSError`` when it cannot start)."""
    return Supervised(backend, backend.start(launch))
