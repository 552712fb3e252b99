"""JSON-line events: the one channel from a running pipeline to the worker, the CLI and the TUI.

Each line is a flat JSON object with ``v`` (format version), ``t`` (UTC time), ``job``, ``stage`` and
``type``; readers ignore fields they do not know and skip a torn line (a last one waits for its end; one that
a full disk or a crash cut short stays alone, as every write starts on a fresh line).
"""

from __future__ import annotations

import json
import os
import re
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal, TextIO

from runner.core.disksize import size_text
from runner.core.secrets import redact_data
from runner.core.tail import LineTail

EVENT_VERSION = 1
EventType = Literal["stage_start", "stage_end", "progress", "metric", "artifact", "log", "error", "job_end"]
EVENT_TYPES: tuple[str, ...] = EventType.__args__  # type: ignore[attr-defined]

Event = dict[str, Any]


def now_iso() -> str:
    """The current UTC time as an ISO-8601 string with milliseconds."""
    return datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


class EventWriter:
    """Appends events to ``events.jsonl``, one flushed line each, always starting on a fresh line (a torn
    line left by a full disk or a crash never swallows the next event); optionally echoes them to a stream."""

    def __init__(self, path: Path, job: str, echo: TextIO | None = None) -> None:
        self.path = path
        self.job = job
        self.echo = echo
        path.parent.mkdir(parents=True, exist_ok=True)

    def emit(self, type_: EventType, stage: str | None = None, **fields: Any) -> Event:
        """Write one event; every string in it (nested ones too) passes through secret redaction first."""
        event: Event = {"v": EVENT_VERSION, "t": now_iso(), "job": self.job, "stage": stage, "type": type_}
        for key, value in fields.items():
            if value is not None:
                event[key] = redact_data(value)
        line = json.dumps(event, ensure_ascii=False) + "\n"
        with self.path.open("a+b") as handle:
            if handle.tell() and os.pread(handle.fileno(), 1, handle.tell() - 1) != b"\n":
                line = "\n" + line  # a write cut short (a full disk) left a torn line: it stays alone
            handle.write(line.encode("utf-8"))
            handle.flush()
            os.fsync(handle.fileno())
        if self.echo is not None:
            self.echo.write(format_event(event) + "\n")
            self.echo.flush()
        return event


@dataclass
class EventTail(LineTail):
    """Reads new complete lines of an events file from where the last read stopped."""

    def read_new(self) -> list[Event]:
        """Events appended since the last call (a torn last line waits for its end)."""
        return [event for event in (_decode(line) for line in self.read_lines()) if event is not None]


def read_events(path: Path) -> list[Event]:
    """All complete events of a file."""
    return EventTail(path).read_new()


def _decode(line: bytes) -> Event | None:
    line = line.strip()
    if not line:
        return None
    try:
        event = json.loads(line)
    except (json.JSONDecodeError, UnicodeDecodeError):
        return None
    return event if isinstance(event, dict) else None


# ESC sequences (CSI, OSC/DCS/APC/PM strings, two-byte ones), then any other C0/C1 control but \t and \n
_UNPRINTABLE = re.compile(
    r"\x1b(?:\[[0-?]*[ -/]*[@-~]?|[\]PX^_][^\x07\x1b\x9c]*(?:\x07|\x1b\\|\x9c)?|[ -~]?)"
    r"|[\x00-\x08\x0b-\x1f\x7f-\x9f]"
)


def terminal_safe(text: str) -> str:
    """``text`` without escape sequences and control characters (tabs and newlines stay): what a job
    wrote can neither move the cursor, recolour, retitle nor clear the user's terminal."""
    return _UNPRINTABLE.sub("", text)


def progress_share(event: Event) -> float | None:
    """How far a ``progress`` event says its stage is, from 0 to 1: training's ``step``/``max_steps``, or
    ``done``/``total`` (bytes written, for the export stages); ``None`` when it does not say."""
    keys = ("step", "max_steps") if "step" in event else ("done", "total")
    done, total = (_number(event.get(key)) for key in keys)
    if done is None or total is None or total <= 0:
        return None
    return min(1.0, max(0.0, done / total))


def _number(value: object) -> float | None:
    return float(value) if isinstance(value, int | float) and not isinstance(value, bool) else None


def format_event(event: Event) -> str:
    """One readable line for a terminal (``tuneq run`` and ``tuneq log``), made :func:`terminal_safe`."""
    return terminal_safe(_describe(event))


def _describe(event: Event) -> str:
    stage = event.get("stage") or "-"
    kind = event.get("type")
    head = f"{event.get('t', '')[11:19]} {stage:<9}"
    if kind == "progress" and "step" not in event:
        eta = _number(event.get("eta_s"))
        return f"{head} {_written(event)}" + (f"  eta {eta:.0f}s" if eta is not None else "")
    if kind == "progress":
        parts = [f"step {event.get('step')}/{event.get('max_steps')}"]
        for key, fmt in (
            ("loss", "loss {:.4f}"),
            ("lr", "lr {:.2e}"),
            ("grad_norm", "grad {:.3f}"),
            ("tokens_per_s", "{:.0f} tok/s"),
            ("eta_s", "eta {:.0f}s"),
            ("mem_gib", "{:.1f} GiB"),
        ):
            if isinstance(event.get(key), int | float):
                parts.append(fmt.format(event[key]))
        return f"{head} " + "  ".join(parts)
    if kind == "stage_start":
        return f"{head} started" + (f" ({event['reused']})" if event.get("reused") else "")
    if kind == "stage_end":
        state = "done" if event.get("ok") else "stopped" if event.get("stopped") else "FAILED"
        return f"{head} {state} in {event.get('seconds', 0):.1f}s" + (
            " (reused)" if event.get("reused") else ""
        )
    if kind == "artifact":
        return f"{head} artifact {event.get('path')} ({event.get('bytes', 0):,} bytes)"
    if kind == "metric":
        shown = {k: v for k, v in event.items() if k not in {"v", "t", "job", "stage", "type"}}
        return f"{head} " + "  ".join(
            f"{k} {v:.4g}" if isinstance(v, float) else f"{k} {v}" for k, v in shown.items()
        )
    if kind == "error":
        return f"{head} ERROR {event.get('cause')}" + (
            f"\n          hint: {event['hint']}" if event.get("hint") else ""
        )
    if kind == "job_end":  # "stopped": the worker, which stopped it, logs what that meant (cancelled, ...)
        outcome = "succeeded" if event.get("ok") else "stopped" if event.get("stopped") else "failed"
        return f"{head} job {outcome}" + (f": {event['reason']}" if event.get("reason") else "")
    return f"{head} {event.get('message', '')}"


def _written(event: Event) -> str:
    """``1.2 GB written of ~2.5 GB (48%)`` for bytes, ``120/480 rows (25%)`` for counted items."""
    done, total, share = _number(event.get("done")), _number(event.get("total")), progress_share(event)
    if done is None:
        return "working"
    unit = event.get("unit", "bytes")
    if unit != "bytes":
        counted = f"{done:.0f}" + (f"/{total:.0f}" if total is not None else "")
        return f"{counted} {unit}" + (f" ({100 * share:.0f}%)" if share is not None else "")
    text = size_text(done) + " written"
    if total is not None and share is not None:
        text += f" of ~{size_text(total)} ({100 * share:.0f}%)"
    return text
