"""The event reference (docs/events.md), rendered from the event classes so it cannot drift.

``python -m runner.core.event_reference > docs/events.md``; a test checks the file is current.
"""

from __future__ import annotations

import json
from dataclasses import MISSING, Field, fields
from types import UnionType
from typing import Any, get_args, get_origin, get_type_hints

from runner.core.events import (
    EVENT_CLASSES,
    EVENT_VERSION,
    Artifact,
    Error,
    Event,
    JobEnd,
    Log,
    Metric,
    Progress,
    StageEnd,
    StageStart,
    is_required,
    to_record,
)

_T = "2026-11-24T23:10:05.123Z"
# One line of each type, as the pipeline writes them (the reference shows them; tests round-trip them).
EXAMPLES: tuple[Event, ...] = (
    StageStart(stage="train", t=_T, job="7"),
    Progress(
        stage="train",
        t=_T,
        job="7",
        step=12,
        max_steps=60,
        epoch=0.2,
        loss=1.93,
        lr=0.00018,
        grad_norm=0.58,
        tokens_per_s=31000.0,
        mem_gib=7.0,
        eta_s=95.0,
    ),
    Progress(stage="gguf", t=_T, job="7", done=1_200_000_000, total=3_100_000_000, unit="bytes", eta_s=41.5),
    Metric(stage="train", t=_T, job="7", step=20, eval_loss=1.71),
    Metric(stage="data", t=_T, job="7", values={"train_rows": 430, "eval_rows": 48, "train_tokens": 61204}),
    Artifact(
        stage="quantize",
        t=_T,
        job="7",
        path="gguf/medical-Q4_K_M.gguf",
        kind="gguf",
        bytes=986_048_768,
        sha256="9f2c8e...",
    ),
    Log(stage="train", t=_T, job="7", message="resuming from checkpoints/checkpoint-40"),
    Error(stage="train", t=_T, job="7", cause="CUDA out of memory", hint="lower per_device_train_batch_size"),
    StageEnd(stage="train", t=_T, job="7", ok=False, seconds=61.2),
    JobEnd(
        stage="report",
        t=_T,
        job="7",
        ok=True,
        exit_code=0,
        tested_gguf="gguf/medical-Q4_K_M.gguf",
        tested_quant="q4_k_m",
    ),
)

_HEADER = f"""# Events

<!-- Rendered from runner/core/events.py: python -m runner.core.event_reference > docs/events.md -->

A running job appends one JSON object a line to `events.jsonl` in its run directory
([run-directory.md](run-directory.md)); `tuneq log`, the worker and the TUI read it. Every line has
`v` (the format version, now {EVENT_VERSION}), `type` (one of the sections below) and the fields of
[every line](#every-line); then its type's fields. A field at its default is left out of the line.
Readers ignore fields they do not know, read an optional field of the wrong type as absent (a number is
never `true`/`false`), and skip a line that is torn, of an unknown type, or lacks a required field (or
has it wrongly typed); every write starts on a fresh line, so a line a full disk cut short is skipped
alone.

A job's events end with `job_end`; one that stopped on SIGTERM or SIGINT has `stopped` set in its last
`stage_end` and in `job_end`, and the worker records it interrupted or cancelled, never failed.
"""


def _type_name(annotation: Any) -> str:
    if isinstance(annotation, UnionType):
        names = [_type_name(a) for a in get_args(annotation) if a is not type(None)]
        return " or ".join(filter(None, (", ".join(names[:-1]), names[-1])))
    if get_origin(annotation) is dict:
        return "each " + _type_name(get_args(annotation)[1])
    return {int: "integer", float: "number", str: "string", bool: "boolean"}[annotation]


def _default(f: Field[Any]) -> str:
    if is_required(f):
        return "**required**"
    return "none" if f.default in (None, MISSING) else f"`{json.dumps(f.default)}`"


def _table(cls: type, own: bool) -> list[str]:
    hints = get_type_hints(cls)
    rows = ["| field | type | default | meaning |", "|---|---|---|---|"]
    for f in fields(cls):
        if own == (f.name in {"stage", "t", "job"}):
            continue
        name = "*(other)*" if f.name == "values" else f"`{f.name}`"
        rows.append(f"| {name} | {_type_name(hints[f.name])} | {_default(f)} | {f.metadata['doc']} |")
    return rows


def render() -> str:
    """docs/events.md."""
    out = [_HEADER, "## Every line", "", *_table(EVENT_CLASSES[0], own=False), ""]
    for cls in EVENT_CLASSES:
        out += [f"## `{cls.TYPE}`", "", (cls.__doc__ or "").strip(), "", *_table(cls, own=True), ""]
        out += ["```json", *(json.dumps(to_record(e)) for e in EXAMPLES if isinstance(e, cls)), "```", ""]
    return "\n".join(out).rstrip("\n") + "\n"


if __name__ == "__main__":
    print(render(), end="")
