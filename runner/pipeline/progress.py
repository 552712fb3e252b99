"""Progress of the stages outside training: bytes an output has grown to (merge, GGUF conversion,
quantization, the adapter's GGUF), or items counted through (the data stage's rows).

Their libraries report nothing while they work: on an 8B model that is minutes of silence. While such a
stage runs, a thread measures what it has written so far against what the stage is expected to write
(runner/core/disksize.py) and emits ``progress`` events with ``done``, ``total``, ``unit`` and ``eta_s``:
one at the start, one each ``every_s`` seconds in which the output grew (and every ``QUIET_S`` while it
does not), and one at the end. The CLI, the worker and the TUI read
them like the training's steps.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path

from runner.core.events import Progress
from runner.pipeline.context import StageContext

EVERY_S = 2.0  # how often the output is measured; an event when it grew
QUIET_S = 30.0  # an event at least this often while it does not grow


def bytes_under(paths: Iterable[Path]) -> int:
    """Bytes in these files and in the files under these folders (a path not there yet counts 0)."""
    total = 0
    for path in paths:
        try:
            files = path.rglob("*") if path.is_dir() else [path]
            total += sum(f.stat().st_size for f in files if f.is_file())
        except FileNotFoundError:  # renamed or removed while measured
            continue
    return total


@contextmanager
def written_bytes_progress(
    ctx: StageContext, outputs: Callable[[], Iterable[Path]], total: int | None, every_s: float = EVERY_S
) -> Iterator[None]:
    """Emit ``progress`` events for the bytes under ``outputs()`` while the block runs."""
    start = time.monotonic()
    stopped = threading.Event()
    said, said_at = -1, start  # the bytes the last event said, and when

    def report(final: bool = False) -> None:
        nonlocal said, said_at
        done = bytes_under(outputs())
        now = time.monotonic()
        if not final and done == said and now - said_at < QUIET_S:
            return  # nothing new to say (a converter still loading)
        expected = done if final else total  # the estimate is a few per cent off: the end is the end
        eta = None
        if expected and 0 < done < expected:
            eta = round((now - start) * (expected - done) / done, 1)
        ctx.emit(Progress(done=done, total=expected, unit="bytes", eta_s=eta))
        said, said_at = done, now

    def watch() -> None:
        while not stopped.wait(every_s):
            report()

    report()
    watcher = threading.Thread(target=watch, name=f"progress-{ctx.stage}", daemon=True)
    watcher.start()
    try:
        yield
    finally:
        stopped.set()
        watcher.join()
    report(final=True)


@contextmanager
def counted_progress(
    ctx: StageContext, total: int, unit: str, every_s: float = EVERY_S
) -> Iterator[Callable[[int], None]]:
    """Emit ``progress`` events (``done`` of ``total`` ``unit``) for a loop that calls the yielded
    ``advance(n)``: at the start, at most every ``every_s`` seconds, and at the end."""
    start = time.monotonic()
    done, said_at = 0, start

    def report(now: float) -> None:
        eta = round((now - start) * (total - done) / done, 1) if 0 < done < total else None
        ctx.emit(Progress(done=done, total=total, unit=unit, eta_s=eta))

    def advance(n: int = 1) -> None:
        nonlocal done, said_at
        done += n
        if (now := time.monotonic()) - said_at >= every_s:
            report(now)
            said_at = now

    report(start)
    yield advance
    report(time.monotonic())
