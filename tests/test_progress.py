"""Progress of the export stages: bytes written against the expected size, as events every reader folds."""

from __future__ import annotations

import threading
import time
from dataclasses import replace
from pathlib import Path

from runner.core.events import EventWriter, Progress, StageStart, format_event, read_events
from runner.core.rundir import RunDir
from runner.pipeline.context import StageContext
from runner.pipeline.progress import counted_progress, written_bytes_progress
from runner.spec import parse_spec
from runner.store import Progress as JobProgress
from runner.worker.follow import Follower


def _ctx(root: Path) -> StageContext:
    spec = parse_spec('name = "x"\n[model]\nbase = "m"\n[data]\nsource = "d.jsonl"\n', "x.toml")
    run = RunDir(root)
    ctx = StageContext(spec, run, {"job": "1"}, EventWriter(run.events, "1"))
    ctx.stage = "gguf"
    return ctx


def test_a_growing_output_is_reported_with_its_share_and_eta(tmp_path: Path) -> None:
    ctx = _ctx(tmp_path / "run")
    out = tmp_path / "out.gguf.tmp"
    # a writer that takes a while, like the converter
    with written_bytes_progress(ctx, lambda: [out], total=40_000, every_s=0.05), out.open("wb") as handle:
        for _ in range(10):
            handle.write(b"\0" * 3_000)
            handle.flush()
            time.sleep(0.06)
    events = [e for e in read_events(ctx.run.events) if isinstance(e, Progress)]
    assert events[0].done == 0 and events[0].total == 40_000 and events[0].stage == "gguf"
    middle = events[1:-1]
    assert middle, "no progress while the file grew"
    assert [e.done for e in middle] == sorted(e.done or 0 for e in middle)
    assert any(0 < (e.done or 0) < 30_000 and (e.eta_s or 0) > 0 for e in middle)
    assert (events[-1].done, events[-1].total) == (30_000, 30_000)  # the end is the real size
    assert events[-1].share == 1.0
    line = format_event(replace(middle[0], done=12_000_000, total=48_000_000, eta_s=9.0))
    assert line.endswith("gguf      12 MB written of ~48 MB (25%)  eta 9s")


def test_a_quiet_output_says_nothing_new_and_a_failing_stage_stops_its_thread(tmp_path: Path) -> None:
    ctx = _ctx(tmp_path / "run")
    try:
        with written_bytes_progress(ctx, lambda: [tmp_path / "never"], total=10, every_s=0.01):
            time.sleep(0.2)  # a converter still importing: the output does not grow
            raise RuntimeError("converter failed")
    except RuntimeError:
        pass
    assert not [t for t in threading.enumerate() if t.name == "progress-gguf"]
    time.sleep(0.05)
    assert len(read_events(ctx.run.events)) == 1  # the start only: no repeats, no end, nothing after


def test_counted_items_report_at_the_start_now_and_then_and_at_the_end(tmp_path: Path) -> None:
    ctx = _ctx(tmp_path / "run")
    with counted_progress(ctx, 40, "rows", every_s=0.05) as advance:
        for _ in range(40):
            time.sleep(0.01)
            advance(1)
    events = [e for e in read_events(ctx.run.events) if isinstance(e, Progress)]
    assert (events[0].done, events[-1].done) == (0, 40) and {e.total for e in events} == {40}
    assert 3 <= len(events) < 40  # not one event per row
    assert format_event(replace(events[0], done=10)).endswith("gguf      10/40 rows (25%)")


def test_the_worker_mirrors_a_stage_eta_and_drops_the_last_stage_steps(tmp_path: Path) -> None:
    events = EventWriter(tmp_path / "events.jsonl", "1")
    follower = Follower.at(events.path, 0)
    events.emit(StageStart(stage="train"))
    events.emit(Progress(stage="train", step=60, max_steps=60, loss=0.5, eta_s=0.0))
    events.emit(StageStart(stage="gguf"))
    follower.read()
    assert follower.progress == JobProgress("gguf", None, None, 0.5, None)
    events.emit(Progress(stage="gguf", done=10, total=40, unit="bytes", eta_s=12.0))
    follower.read()
    assert follower.progress == JobProgress("gguf", None, None, 0.5, 12.0)


def test_the_loss_curve_ships_as_a_png(tmp_path: Path) -> None:
    from PIL import Image

    from runner.ship.plot import write_loss_png

    train = {
        "loss_curve": [[s, 2.0 / s] for s in range(1, 61)],
        "eval_curve": [[20, 0.3], [40, 0.2], [60, 0.15]],
    }
    assert write_loss_png(train, tmp_path / "loss.png")
    with Image.open(tmp_path / "loss.png") as image:
        assert image.format == "PNG" and image.size == (600, 320)
    assert not write_loss_png({"loss_curve": [[1, 2.0]]}, tmp_path / "one.png")  # one point is no curve
    assert not write_loss_png({}, tmp_path / "old.png") and not (tmp_path / "old.png").exists()
