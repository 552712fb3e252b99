"""The typed events: every type written and read back, the one type check, old run directories, the reference."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

from runner.core import tested
from runner.core.event_reference import EXAMPLES, render
from runner.core.events import (
    EVENT_TYPES,
    Artifact,
    Error,
    EventWriter,
    JobEnd,
    Log,
    Metric,
    Progress,
    StageEnd,
    format_event,
    parse,
    read_events,
    to_record,
)

ROOT = Path(__file__).resolve().parent.parent
OLD_EVENTS = Path(__file__).parent / "fixtures" / "events-v1.jsonl"  # written by tuneq before typed events


def test_every_event_type_round_trips_through_the_writer_and_the_reader(tmp_path: Path) -> None:
    assert {e.TYPE for e in EXAMPLES} == set(EVENT_TYPES)
    writer = EventWriter(tmp_path / "events.jsonl", "7")
    for example in EXAMPLES:
        writer.emit(example)
    read = read_events(writer.path)
    assert read == [replace(e, t=r.t, job="7") for e, r in zip(EXAMPLES, read, strict=True)]
    assert all(parse(json.dumps(to_record(e))) == e for e in EXAMPLES)
    assert all(format_event(e).startswith("23:10:05 ") for e in EXAMPLES)


def test_a_line_is_flat_json_with_the_fields_at_their_default_left_out() -> None:
    end = StageEnd(stage="train", t="2026-01-01T00:00:00.000Z", job="1", ok=True, seconds=2.5)
    assert to_record(end) == {
        "v": 1,
        "t": "2026-01-01T00:00:00.000Z",
        "job": "1",
        "stage": "train",
        "type": "stage_end",
        "ok": True,
        "seconds": 2.5,
    }
    metric = Metric(stage="smoke", values={"prompt": "2+2?", "ok": True, "tokens_per_s": None})
    assert {k: v for k, v in to_record(metric).items() if k not in {"v", "t", "job"}} == {
        "stage": "smoke",
        "type": "metric",
        "prompt": "2+2?",
        "ok": True,
    }


def test_a_wrongly_typed_field_is_refused_where_lines_are_parsed() -> None:
    """An optional field of the wrong type reads as absent (a boolean is no number, a float no step count);
    a required one skips the line, as a torn one is."""
    head = {"v": 1, "t": "2026-01-01T00:00:00.000Z", "job": "1", "stage": "train"}
    empty = Progress(stage="train", t="2026-01-01T00:00:00.000Z", job="1")
    progress = parse({**head, "type": "progress", "step": True, "max_steps": 60, "loss": "1.5", "eta_s": 3})
    assert progress == replace(empty, max_steps=60, eta_s=3.0)
    assert parse({**head, "type": "progress", "step": 1.5, "mem_gib": False}) == empty
    assert (
        parse({**head, "type": "stage_end", "ok": True, "seconds": True}) is None
    )  # a required one: skipped
    assert parse({**head, "type": "stage_end", "ok": 1, "seconds": 2.0}) is None
    assert parse({**head, "type": "job_end"}) is None  # `ok` missing
    assert parse({**head, "type": "log", "message": 7}) is None
    nested = parse({**head, "type": "metric", "ppl": 6.5, "request": {"headers": {}}, "flag": False})
    assert isinstance(nested, Metric) and nested.values == {"ppl": 6.5, "flag": False}
    for torn in (b"", b"   ", b'{"v": 1, "t": "2026', b"[1, 2]", b'"a string"', b"\xff\xfe"):
        assert parse(torn) is None


def test_an_events_file_from_before_typed_events_still_reads() -> None:
    events = read_events(OLD_EVENTS)
    lines = OLD_EVENTS.read_bytes().splitlines()
    assert len(events) == len(lines) - 2  # the torn line and the unknown type are skipped, alone
    assert [e.TYPE for e in events[:4]] == ["stage_start", "progress", "metric", "stage_end"]
    data = events[2]
    assert isinstance(data, Metric) and data.values == {
        "train_rows": 43,
        "eval_rows": 5,
        "train_tokens": 5120,
        "truncated": 0,
        "dropped": 0,
    }
    train = [e for e in events if isinstance(e, Progress) and e.training]
    assert [(p.step, p.loss, p.eta_s) for p in train] == [(1, 2.5, 12.0), (2, 2.1, 0.0)]  # "note" ignored
    counted = [(e.stage, e.unit, e.share) for e in events if isinstance(e, Progress) and not e.training]
    assert counted == [("data", "rows", 0.0), ("gguf", "bytes", 0.25)]
    assert [e.message for e in events if isinstance(e, Log)] == ["resuming from checkpoint-1"]
    (reused,) = [e for e in events if isinstance(e, StageEnd) and e.reused]
    assert (reused.stage, reused.ok, reused.stopped) == ("lora", True, False)
    assert [e.path for e in events if isinstance(e, Artifact)] == ["gguf/demo-Q4_K_M.gguf", "report.json"]
    assert [(e.cause, e.hint) for e in events if isinstance(e, Error)] == [
        ("the answer has no </think>", "train longer")
    ]
    failed, passed = (e for e in events if isinstance(e, JobEnd))
    assert (failed.ok, failed.exit_code, failed.reason, tested.tested_gguf(failed)) == (
        False,
        1,
        "the answer has no </think>",
        None,
    )
    assert tested.tested_gguf(passed) == tested.TestedGguf(
        "q4_k_m", "gguf/demo-Q4_K_M.gguf"
    )  # before `tested_gguf`
    assert format_event(events[5]).endswith(
        "train     step 1/2  loss 2.5000  lr 2.00e-04  grad 1.100  310 tok/s  eta 12s  0.6 GiB"
    )


def test_the_event_reference_is_current() -> None:
    assert (ROOT / "docs" / "events.md").read_text() == render(), (
        "run: python -m runner.core.event_reference > docs/events.md"
    )
