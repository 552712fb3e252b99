"""The beat of a screen's polling thread: every ``interval`` seconds, at once on ``kick``."""

from __future__ import annotations

import threading


class Pulse:
    """Paces a polling loop that runs in a Textual thread worker."""

    def __init__(self, interval: float) -> None:
        self.interval = interval
        self.paused = False
        self.forced = False
        self._event = threading.Event()

    def kick(self) -> None:
        """Poll now and treat the store as changed (after this process wrote to it)."""
        self.forced = True
        self._event.set()

    def wait(self) -> None:
        """Sleep until the next beat or a kick."""
        self._event.wait(self.interval)
        self._event.clear()

    def take_forced(self) -> bool:
        """Whether a kick asked for a full reload since the last call."""
        forced, self.forced = self.forced, False
        return forced
