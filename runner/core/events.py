"""JSON-line events: the one channel from a running pipeline to the worker, the CLI and the TUI.

Each event type is a frozen dataclass below; :meth:`EventWriter.emit` writes one as a flat JSON line and
:func:`parse` reads one back, checking every field's type (the one place that does). Each line has ``v``
(format version), ``t`` (UTC time), ``job``, ``stage`` and ``type``; readers ignore fields they do not know,
read an optional field of the wrong type as absent, and skip a line that is torn, of an unknown type, or
lacks a required field (a torn last line waits for its end; one that a full disk or a crash cut short stays
alone, as every write starts on a fresh line). docs/events.md is rendered from these classes
(:mod:`runner.core.event_reference`).
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Mapping
from dataclasses import MISSING, Field, dataclass, field, fields, replace
from datetime import UTC, datetime
from pathlib import Path
from types import NoneType, UnionType
from typing import Any, ClassVar, TextIO, get_args, get_type_hints

from runner.core.disksize import size_text
from runner.core.secrets import redact_data
from runner.core.tail import LineTail

EVENT_VERSION = 1
MetricValue = str | int | float | bool | None


def now_iso() -> str:
    """The current UTC time as an ISO-8601 string with milliseconds."""
    return datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def _doc(text: str) -> dict[str, str]:
    """A field's one-line description (docs/events.md shows it)."""
    return {"doc": text}


@dataclass(frozen=True, kw_only=True)
class _Event:
    """The fields every event line has (besides ``v``, the format version, and ``type``)."""

    TYPE: ClassVar[str]
    stage: str | None = field(
        default=None, metadata=_doc("the pipeline stage it comes from (`report` at the end)")
    )
    t: str = field(default="", metadata=_doc("when it was written: UTC, ISO 8601 with milliseconds"))
    job: str = field(default="", metadata=_doc("the job's id"))


@dataclass(frozen=True, kw_only=True)
class StageStart(_Event):
    """A stage begins (or is reused: then its `stage_end` follows at once)."""

    TYPE = "stage_start"
    reused: str | None = field(default=None, metadata=_doc("why its earlier outputs are reused"))


@dataclass(frozen=True, kw_only=True)
class StageEnd(_Event):
    """A stage ended."""

    TYPE = "stage_end"
    ok: bool = field(metadata=_doc("whether it finished"))
    seconds: float = field(metadata=_doc("how long it ran"))
    reused: bool = field(default=False, metadata=_doc("its earlier outputs were reused"))
    stopped: bool = field(default=False, metadata=_doc("a stop signal (SIGTERM, SIGINT) ended it"))


@dataclass(frozen=True, kw_only=True)
class Progress(_Event):
    """How far a stage is: training's steps, or another stage's `done` of `total` `unit`."""

    TYPE = "progress"
    step: int | None = field(default=None, metadata=_doc("training: the optimizer steps done"))
    max_steps: int | None = field(default=None, metadata=_doc("training: the steps it will run"))
    epoch: float | None = field(default=None, metadata=_doc("training: epochs done"))
    loss: float | None = field(default=None, metadata=_doc("training: the training loss"))
    lr: float | None = field(default=None, metadata=_doc("training: the learning rate"))
    grad_norm: float | None = field(default=None, metadata=_doc("training: the gradient norm"))
    tokens_per_s: float | None = field(default=None, metadata=_doc("training: tokens per second"))
    mem_gib: float | None = field(
        default=None, metadata=_doc("training: peak memory in GiB (the GPU's, else the process's)")
    )
    done: float | None = field(default=None, metadata=_doc("other stages: how much is done, in `unit`"))
    total: float | None = field(default=None, metadata=_doc("other stages: how much there is (an estimate)"))
    unit: str | None = field(
        default=None, metadata=_doc("other stages: `bytes` written, `rows`, `answers`...")
    )
    eta_s: float | None = field(default=None, metadata=_doc("seconds the stage still needs, estimated"))

    @property
    def training(self) -> bool:
        """Whether this is training's step count (else another stage's ``done`` of ``total``)."""
        return self.step is not None

    @property
    def share(self) -> float | None:
        """How far the stage is, from 0 to 1; ``None`` when the event does not say."""
        done, total = (self.step, self.max_steps) if self.training else (self.done, self.total)
        if done is None or total is None or total <= 0:
            return None
        return min(1.0, max(0.0, done / total))


@dataclass(frozen=True, kw_only=True)
class Metric(_Event):
    """Measurements: the data stage's counts, eval loss, each smoke answer, each GGUF's perplexity."""

    TYPE = "metric"
    step: int | None = field(default=None, metadata=_doc("training: the step an eval loss was measured at"))
    eval_loss: float | None = field(default=None, metadata=_doc("training: the loss on the eval split"))
    values: dict[str, MetricValue] = field(
        default_factory=dict,
        metadata=_doc(
            "the other measurements, each a field of its own: `train_rows`, `eval_rows`, `train_tokens`, "
            "`truncated`, `dropped` (data); `prompt`, `ok`, `completion_tokens`, `tokens_per_s` (smoke); "
            "`quant`, `ppl`, `ppl_increase`, `ppl_<language>` (fidelity)"
        ),
    )


@dataclass(frozen=True, kw_only=True)
class Artifact(_Event):
    """A finished output file."""

    TYPE = "artifact"
    path: str = field(metadata=_doc("its path in the run directory"))
    kind: str | None = field(default=None, metadata=_doc("what it is: `gguf`, `lora`, `report`..."))
    bytes: int | None = field(default=None, metadata=_doc("its size"))
    sha256: str | None = field(default=None, metadata=_doc("its SHA-256, hex"))


@dataclass(frozen=True, kw_only=True)
class Log(_Event):
    """A line for the user."""

    TYPE = "log"
    message: str = field(metadata=_doc("the line"))


@dataclass(frozen=True, kw_only=True)
class Error(_Event):
    """Why the stage failed or stopped (its `stage_end` follows)."""

    TYPE = "error"
    cause: str = field(metadata=_doc("what went wrong, one line"))
    hint: str | None = field(default=None, metadata=_doc("what to do about it"))


@dataclass(frozen=True, kw_only=True)
class JobEnd(_Event):
    """The pipeline's last event: how the job ended."""

    TYPE = "job_end"
    ok: bool = field(metadata=_doc("every stage finished"))
    exit_code: int | None = field(default=None, metadata=_doc("the pipeline's exit status"))
    stopped: bool = field(
        default=False, metadata=_doc("a stop signal ended it: the worker says what that meant")
    )
    reason: str | None = field(
        default=None, metadata=_doc("why it failed or stopped: the failing stage's cause")
    )
    tested_gguf: str | None = field(
        default=None, metadata=_doc("the GGUF the smoke test ran (run-directory path)")
    )
    tested_quant: str | None = field(default=None, metadata=_doc("its quant, the job file's `smoke.gguf`"))
    q4_k_m: str | None = field(
        default=None, metadata=_doc("before tuneq 0.1: the tested file, always Q4_K_M")
    )


Event = StageStart | StageEnd | Progress | Metric | Artifact | Log | Error | JobEnd
EVENT_CLASSES: tuple[type[Event], ...] = get_args(Event)
EVENT_TYPES: tuple[str, ...] = tuple(cls.TYPE for cls in EVENT_CLASSES)
_BY_TYPE: dict[str, type[Event]] = {cls.TYPE: cls for cls in EVENT_CLASSES}
_HINTS: dict[type[Event], dict[str, Any]] = {cls: get_type_hints(cls) for cls in EVENT_CLASSES}
_HEAD = ("v", "t", "job", "stage", "type")


def to_record(event: Event) -> dict[str, Any]:
    """The event as its JSON line's object: ``v``, ``t``, ``job``, ``stage``, ``type``, then each field not at
    its default (a metric's ``values`` flat among them)."""
    record: dict[str, Any] = {"v": EVENT_VERSION, "t": event.t, "job": event.job, "stage": event.stage}
    record["type"] = event.TYPE
    for f in fields(event):
        value = getattr(event, f.name)
        if f.name in _HEAD or value == (f.default_factory() if callable(f.default_factory) else f.default):
            continue
        if isinstance(event, Metric) and f.name == "values":
            record.update({k: v for k, v in value.items() if k not in record and v is not None})
        else:
            record[f.name] = value
    return record


def parse(line: bytes | str | Mapping[str, Any]) -> Event | None:
    """The event a JSON line (or its decoded object) holds; ``None`` for a torn or blank line, an unknown
    type, or a required field missing or of the wrong type (an optional one of the wrong type reads as
    absent, as do a metric's values that are no number, string or boolean)."""
    record: object = line
    if isinstance(line, bytes | str):
        try:
            record = json.loads(line) if line.strip() else None
        except (json.JSONDecodeError, UnicodeDecodeError):
            return None
    if not isinstance(record, Mapping) or (cls := _BY_TYPE.get(str(record.get("type")))) is None:
        return None
    hints, known = _HINTS[cls], {f.name: f for f in fields(cls)}
    flat = "values" if cls is Metric else None  # a metric's other fields, gathered into ``values``
    values: dict[str, Any] = {}
    for name, f in known.items():
        if name in record and name != flat:
            try:
                values[name] = _typed(record[name], hints[name])
            except TypeError:
                if is_required(f):
                    return None
    if flat:
        extra = {k: record[k] for k in record if k not in known and k not in _HEAD}
        values[flat] = {k: v for k, v in extra.items() if _fits(v, MetricValue)}
    try:
        return cls(**values)
    except TypeError:  # a required field missing
        return None


def is_required(f: Field[Any]) -> bool:
    """Whether an event's field has no default: a line without it (or with it wrongly typed) is skipped."""
    return f.default is MISSING and f.default_factory is MISSING


def _fits(value: object, hint: Any) -> bool:
    try:
        _typed(value, hint)
    except TypeError:
        return False
    return True


def _typed(value: object, hint: Any) -> Any:
    """``value`` as a field of type ``hint`` holds it (an integer is also a float, a boolean is no number), or
    :class:`TypeError`: the one type check of event fields."""
    for option in get_args(hint) if isinstance(hint, UnionType) else (hint,):
        if (option is NoneType and value is None) or (option in (bool, str) and isinstance(value, option)):
            return value
        if isinstance(value, int | float) and not isinstance(value, bool):
            if option is float:
                return float(value)
            if option is int and isinstance(value, int):
                return value
    raise TypeError(f"{value!r} is no {hint}")


class EventWriter:
    """Appends events to ``events.jsonl``, one flushed line each, always starting on a fresh line (a torn
    line left by a full disk or a crash never swallows the next event); optionally echoes them to a stream."""

    def __init__(self, path: Path, job: str, echo: TextIO | None = None) -> None:
        self.path = path
        self.job = job
        self.echo = echo
        path.parent.mkdir(parents=True, exist_ok=True)

    def emit(self, event: Event) -> None:
        """Write one event, stamped with the time and the job; every string in it passes through secret
        redaction first."""
        record = redact_data(to_record(replace(event, t=now_iso(), job=self.job)))
        line = json.dumps(record, ensure_ascii=False) + "\n"
        with self.path.open("a+b") as handle:
            if handle.tell() and os.pread(handle.fileno(), 1, handle.tell() - 1) != b"\n":
                line = "\n" + line  # a write cut short (a full disk) left a torn line: it stays alone
            handle.write(line.encode("utf-8"))
            handle.flush()
            os.fsync(handle.fileno())
        if self.echo is not None and (written := parse(record)) is not None:
            self.echo.write(format_event(written) + "\n")
            self.echo.flush()


@dataclass
class EventTail(LineTail):
    """Reads new complete lines of an events file from where the last read stopped."""

    def read_new(self) -> list[Event]:
        """Events appended since the last call (a torn last line waits for its end)."""
        return [event for event in map(parse, self.read_lines()) if event is not None]


def read_events(path: Path) -> list[Event]:
    """All complete events of a file."""
    return EventTail(path).read_new()


# ESC sequences (CSI, OSC/DCS/APC/PM strings, two-byte ones), then any other C0/C1 control but \t and \n
_UNPRINTABLE = re.compile(
    r"\x1b(?:\[[0-?]*[ -/]*[@-~]?|[\]PX^_][^\x07\x1b\x9c]*(?:\x07|\x1b\\|\x9c)?|[ -~]?)"
    r"|[\x00-\x08\x0b-\x1f\x7f-\x9f]"
)


def terminal_safe(text: str) -> str:
    """``text`` without escape sequences and control characters (tabs and newlines stay): what a job
    wrote can neither move the cursor, recolour, retitle nor clear the user's terminal."""
    return _UNPRINTABLE.sub("", text)


def format_event(event: Event) -> str:
    """One readable line for a terminal (``tuneq run`` and ``tuneq log``), made :func:`terminal_safe`."""
    return terminal_safe(_describe(event))


def _describe(event: Event) -> str:
    head = f"{event.t[11:19]} {event.stage or '-':<9}"
    match event:
        case Progress(training=False):
            return f"{head} {_written(event)}" + (
                f"  eta {event.eta_s:.0f}s" if event.eta_s is not None else ""
            )
        case Progress():
            return f"{head} " + "  ".join(_training_numbers(event))
        case StageStart():
            return f"{head} started" + (f" ({event.reused})" if event.reused else "")
        case StageEnd():
            state = "done" if event.ok else "stopped" if event.stopped else "FAILED"
            return f"{head} {state} in {event.seconds:.1f}s" + (" (reused)" if event.reused else "")
        case Artifact():
            return f"{head} artifact {event.path} ({event.bytes or 0:,} bytes)"
        case Metric():
            shown = {"step": event.step, "eval_loss": event.eval_loss} | event.values
            return f"{head} " + "  ".join(
                f"{k} {v:.4g}" if isinstance(v, float) else f"{k} {v}"
                for k, v in shown.items()
                if v is not None
            )
        case Error():
            return f"{head} ERROR {event.cause}" + (f"\n          hint: {event.hint}" if event.hint else "")
        case JobEnd():  # "stopped": the worker, which stopped it, logs what that meant (cancelled, ...)
            outcome = "succeeded" if event.ok else "stopped" if event.stopped else "failed"
            return f"{head} job {outcome}" + (f": {event.reason}" if event.reason else "")
        case Log():
            return f"{head} {event.message}"


def _training_numbers(event: Progress) -> list[str]:
    """``step 12/60  loss 1.9300  lr 1.80e-04 ...``: the numbers a training ``progress`` event has."""
    parts = [f"step {event.step}/{event.max_steps}"]
    for value, fmt in (
        (event.loss, "loss {:.4f}"),
        (event.lr, "lr {:.2e}"),
        (event.grad_norm, "grad {:.3f}"),
        (event.tokens_per_s, "{:.0f} tok/s"),
        (event.eta_s, "eta {:.0f}s"),
        (event.mem_gib, "{:.1f} GiB"),
    ):
        if value is not None:
            parts.append(fmt.format(value))
    return parts


def _written(event: Progress) -> str:
    """``1.2 GB written of ~2.5 GB (48%)`` for bytes, ``120/480 rows (25%)`` for counted items."""
    done, total, share = event.done, event.total, event.share
    if done is None:
        return "working"
    unit = event.unit or "bytes"
    if unit != "bytes":
        counted = f"{done:.0f}" + (f"/{total:.0f}" if total is not None else "")
        return f"{counted} {unit}" + (f" ({100 * share:.0f}%)" if share is not None else "")
    text = size_text(done) + " written"
    if total is not None and share is not None:
        text += f" of ~{size_text(total)} ({100 * share:.0f}%)"
    return text
