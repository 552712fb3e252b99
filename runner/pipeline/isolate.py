"""Run native-library work (llama.cpp) in a child process, so a crash becomes a stage failure.

A segfault or abort inside llama.cpp would otherwise kill the pipeline before it can write its error
event and report. The function and its arguments must be picklable (module-level, plain data).
"""

from __future__ import annotations

import faulthandler
import multiprocessing
import signal
from collections.abc import Callable
from typing import Any, TypeVar

from runner.pipeline.context import StageFailed

T = TypeVar("T")


class ChildCrashed(StageFailed):
    """The child process died (a signal or an exit) instead of returning: a native crash."""


def _child(conn: Any, func: Callable[..., Any], args: tuple[Any, ...]) -> None:
    faulthandler.enable()  # a native crash prints the Python stack to stderr (the stage's log)
    try:
        conn.send(("ok", func(*args)))
    except BaseException as exc:
        conn.send(("error", exc if _picklable(exc) else RuntimeError(f"{type(exc).__name__}: {exc}")))
    finally:
        conn.close()


def _picklable(exc: BaseException) -> bool:
    import pickle

    try:
        pickle.dumps(exc)
    except Exception:  # any pickling failure
        return False
    return True


def call_in_child(what: str, func: Callable[..., T], *args: Any) -> T:
    """``func(*args)`` in a spawned process; its exception is re-raised, a crash becomes ChildCrashed."""
    context = multiprocessing.get_context("spawn")
    parent, child = context.Pipe(duplex=False)
    process = context.Process(target=_child, args=(child, func, args), daemon=True)
    process.start()
    child.close()
    try:
        status, value = parent.recv()
    except EOFError:
        process.join()
        code = process.exitcode or 0
        died = f"signal {signal.Signals(-code).name}" if code < 0 else f"exit code {code}"
        raise ChildCrashed(
            f"{what} crashed inside llama.cpp ({died})",
            "see log.txt for llama.cpp's last lines; on a GPU, check the driver and free memory",
        ) from None
    finally:
        parent.close()
    process.join()
    if status == "error":
        raise value
    return value
