"""Fixture data for the TUI tests: a queue in every state with real run directories, written by the
pipeline's own EventWriter. Run as a script (``python tests/tui_fixtures.py RUN_DIR``) it is a stand-in
pipeline for the end-to-end test: a whole run, every stage, artifacts, smoke.json and report.json, paced
by $TUI_FAKE_SECONDS."""

from __future__ import annotations

import hashlib
import io
import json
import os
import shutil
import sys
import time
from collections.abc import Callable
from contextlib import nullcontext
from pathlib import Path
from typing import Any, TextIO

from rich.cells import cell_len
from rich.console import Console
from textual.errors import NoWidget
from textual.geometry import Region

from runner.core.events import Artifact, Error, EventWriter, JobEnd, Metric, Progress, StageEnd, StageStart
from runner.core.jobstate import JobState
from runner.core.stages import STAGE_NAMES
from runner.ship.reach import SshHost
from runner.store import NewJob, Owner, Store, WorkerInfo
from runner.store import Progress as JobProgress

ROOT = Path(__file__).resolve().parent.parent
FIXED_NOW = 1_790_000_000.0  # the clock of deterministic tests
TEST_HOST = SshHost("me", "gpu-box", None, "a test")  # where the ship tab's commands fetch from
WORKER = WorkerInfo("gpu-box-1-abc123", "gpu-box", 1, FIXED_NOW - 3600, FIXED_NOW)
PROMPT = "A 45-year-old man has crushing chest pain spreading to the left arm. What is the diagnosis?"
ANSWER = "<think>Crushing pain radiating to the arm suggests ischemia.</think> Acute myocardial infarction."


def write_run(
    root: Path,
    job: str,
    name: str,
    *,
    steps: int = 60,
    stop_at: int | None = None,
    fail: str | None = None,
    pace: Callable[[], None] = lambda: None,
    echo: TextIO | None = None,
) -> None:
    """Write a pipeline run into ``root``: events (all stages), artifacts, smoke.json, report.json.

    ``stop_at`` leaves the job mid-training after that step; ``fail`` fails training with that cause.
    ``echo`` receives the log lines (log.txt when None).
    """
    root.mkdir(parents=True, exist_ok=True)
    with (root / "log.txt").open("a", encoding="utf-8") if echo is None else nullcontext(echo) as log:
        events = EventWriter(root / "events.jsonl", job, echo=log)
        timings: dict[str, Any] = {}
        artifacts: list[dict[str, Any]] = []
        for index, stage in enumerate(STAGE_NAMES):
            events.emit(StageStart(stage=stage))
            if stage == "train" and not _train(events, steps, stop_at, fail, pace):
                if fail:
                    events.emit(JobEnd(ok=False, exit_code=1, reason=fail))
                return
            artifacts += _stage_outputs(root, events, stage, name)
            pace()
            timings[stage] = {"seconds": round(1.5 * (index + 1), 2), "reused": False}
            events.emit(StageEnd(stage=stage, ok=True, seconds=timings[stage]["seconds"]))
        report = {
            "job": job,
            "name": name,
            "ok": True,
            "stages": timings,
            "artifacts": artifacts,
            "smoke": json.loads((root / "smoke.json").read_text()),
        }
        (root / "report.json").write_text(json.dumps(report, indent=2))
        size = (root / "report.json").stat().st_size
        events.emit(Artifact(stage="report", path="report.json", kind="report", bytes=size))
        events.emit(JobEnd(ok=True, exit_code=0, q4_k_m=f"gguf/{name}-Q4_K_M.gguf"))  # before tested_gguf


def _train(
    events: EventWriter, steps: int, stop_at: int | None, fail: str | None, pace: Callable[[], None]
) -> bool:
    for step in range(1, (stop_at or steps) + 1):
        pace()
        events.emit(
            Progress(
                stage="train",
                step=step,
                max_steps=steps,
                epoch=round(step / 20, 4),
                loss=round(2.5 / (1 + step / 10), 4),
                lr=round(3e-3 * (1 - step / steps), 8),
                grad_norm=round(1.0 / (1 + step / 30), 4),
                tokens_per_s=31000.0,
                eta_s=float(steps - step),
                mem_gib=7.0,
            )
        )
        if step % 20 == 0:
            events.emit(Metric(stage="train", step=step, eval_loss=round(2.6 / (1 + step / 12), 4)))
        if fail and step == (stop_at or steps):
            events.emit(Error(stage="train", cause=fail, hint="lower per_device_train_batch_size"))
            events.emit(StageEnd(stage="train", ok=False, seconds=12.0))
            return False
    return stop_at is None


def _stage_outputs(root: Path, events: EventWriter, stage: str, name: str) -> list[dict[str, Any]]:
    files = {
        "lora": [("lora/adapter_model.safetensors", "lora")],
        "merged": [("merged/model.safetensors", "merged")],
        "gguf": [(f"gguf/{name}-f16.gguf", "gguf-f16")],
        "quantize": [(f"gguf/{name}-Q4_K_M.gguf", "gguf-q4_k_m")],
    }.get(stage, [])
    out = []
    for rel, kind in files:
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(f"{kind} of {name}\n".encode() * 100)
        digest = hashlib.sha256(path.read_bytes()).hexdigest()
        size = path.stat().st_size
        events.emit(Artifact(stage=stage, path=rel, kind=kind, bytes=size, sha256=digest))
        out.append({"path": rel, "bytes": size, "sha256": digest})
    if stage == "data":
        events.emit(Metric(stage="data", values={"train_rows": 43, "eval_rows": 5}))
    if stage == "smoke":
        result = {
            "prompt": PROMPT,
            "answer": ANSWER,
            "finish_reason": "stop",
            "completion_tokens": 31,
            "ok": True,
            "checks": [{"name": "contains '</think>'", "ok": True, "detail": ""}],
        }
        smoke = {
            "gguf": f"gguf/{name}-Q4_K_M.gguf",
            "chat_template_embedded": True,
            "ok": True,
            "results": [result],
        }
        (root / "smoke.json").write_text(json.dumps(smoke, indent=2))
    return out


def add_job(store: Store, root: Path, name: str, *, age_s: float, priority: int = 0) -> int:
    """Queue a job created ``age_s`` before :data:`FIXED_NOW` whose run directory is ``root/<id>``."""
    new = NewJob(name, f'name = "{name}"\n', "hash-" + name, f"/jobs/{name}.toml", priority, 1)
    job = store.submit(new, now=FIXED_NOW - age_s, prepare=lambda job_id: _mkdir(root / str(job_id)))
    return job.id


def _mkdir(path: Path) -> Path:
    path.mkdir(parents=True, exist_ok=True)
    return path


def seed_queue(store: Store, root: Path) -> dict[str, int]:
    """Six jobs in every state, each with the run directory its state implies; a live worker."""
    ids: dict[str, int] = {}

    def run(name: str, age_s: float, end: JobState | None, reason: str | None = None, **kw: Any) -> None:
        ids[name] = job_id = add_job(store, root, name, age_s=age_s)
        store.claim(WORKER.id, now=FIXED_NOW - age_s + 5, lease_s=1e9)
        write_run(root / str(job_id), str(job_id), name, **kw)
        if end is None:
            store.update_progress(
                job_id, Owner(WORKER.id, 1), JobProgress("train", 30, 60, 1.25, 30.0), now=FIXED_NOW
            )
        else:
            store.transition(job_id, JobState.RUNNING, end, now=FIXED_NOW - age_s + 600, reason=reason)

    run("demo-tiny", 7200, JobState.SUCCEEDED)
    run("medical-r1", 900, None, stop_at=30)
    oom = "CUDA out of memory"
    run("chat-lora", 5400, JobState.FAILED, reason=oom, stop_at=12, fail=oom)
    ids["small-sft"] = add_job(store, root, "small-sft", age_s=120, priority=5)
    ids["big-sft"] = add_job(store, root, "big-sft", age_s=60)
    ids["old-run"] = add_job(store, root, "old-run", age_s=86400 * 3)
    store.request_cancel(ids["old-run"], now=FIXED_NOW - 86400)
    store.heartbeat(WORKER, now=FIXED_NOW, lease_s=1e9)
    return ids


def write_job_files(directory: Path) -> dict[str, Path]:
    """The demo job file (with its data) and an invalid one with a misspelt key on line 7."""
    shutil.copytree(ROOT / "jobs" / "data", directory / "data")
    good = directory / "demo-tiny.toml"
    shutil.copy(ROOT / "jobs" / "demo-tiny.toml", good)
    bad = directory / "typo.toml"
    bad.write_text(
        'name = "typo"\n[model]\nbase = "x"\n[data]\nsource = "d.jsonl"\n[train]\nlearnin_rate = 1\n'
    )
    return {"good": good, "bad": bad}


def plain(renderable: Any, width: int = 160) -> str:
    """A Rich renderable (a Static's content) as plain text."""
    console = Console(width=width, file=io.StringIO(), color_system=None)
    with console.capture() as capture:
        console.print(renderable)
    return capture.get()


def main(run_dir: str) -> int:
    """The stand-in pipeline: ``TUNEQ_PIPELINE_CMD="python tests/tui_fixtures.py"``."""
    root = Path(run_dir)
    info = json.loads((root / "job.json").read_text())
    seconds = float(os.environ.get("TUI_FAKE_SECONDS", "3"))
    steps = 20
    pause = seconds / (steps + len(STAGE_NAMES))
    write_run(
        root, str(info["job"]), info["name"], steps=steps, pace=lambda: time.sleep(pause), echo=sys.stdout
    )
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1]))


def make_app(
    store: Store,
    jobs_dir: Path,
    *,
    clock: Callable[[], float] = lambda: FIXED_NOW,
    poll_s: float = 0.05,
    ship_host: SshHost = TEST_HOST,
) -> Any:
    """The TUI over ``store`` with a fixed clock, a fast poll (unless ``poll_s``) and a fixed ship host."""
    from tui.app import TuneqApp
    from tui.context import TuiContext

    app = TuneqApp(TuiContext(store, jobs_dir, ship_host, clock=clock, poll_s=poll_s))
    app.notes = []
    notify = app.notify

    def record(message: str, *args: Any, **kwargs: Any) -> None:
        app.notes.append(message)
        notify(message, *args, **kwargs)

    app.notify = record
    return app


async def noted(pilot: Any, text: str) -> None:
    """Wait for a notification containing ``text``."""
    await wait_for(pilot, lambda: any(text in note for note in pilot.app.notes))


async def wait_for(pilot: Any, predicate: Callable[[], object], timeout: float = 5.0) -> None:
    """Let the app run until ``predicate()`` holds (polling threads post their results asynchronously)."""
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {predicate}")
        await pilot.pause(0.05)


def screen_text(app: Any) -> str:
    """What the terminal shows now, as plain text lines: every widget on the screen painted where it is,
    the lowest layer first, through Textual's public API (``Screen.find_widget``, ``Widget.render_lines``)."""
    width, height = app.size
    rows = [[" "] * width for _ in range(height)]
    placed = []
    for widget in app.screen.walk_children(with_self=True):
        try:
            placed.append((app.screen.find_widget(widget), widget))
        except NoWidget:  # not on the screen (a hidden tab, scrolled out of view)
            continue
    for geometry, widget in sorted(placed, key=lambda found: found[0].order):
        region, shown = geometry.region, geometry.visible_region
        crop = Region(shown.x - region.x, shown.y - region.y, shown.width, shown.height)
        for y, strip in enumerate(widget.render_lines(crop) if shown.area else []):
            x = shown.x
            for char in strip.text:
                if x < width:
                    rows[shown.y + y][x] = char
                    if cell_len(char) == 2 and x + 1 < width:
                        rows[shown.y + y][x + 1] = ""  # the wide character's second cell
                x += cell_len(char)
    return "\n".join("".join(row) for row in rows)


def drive(app: Any, scenario: Callable[[Any], Any], size: tuple[int, int] = (80, 24)) -> None:
    """Run ``await scenario(pilot)`` against ``app`` in a headless terminal of ``size``."""
    import asyncio

    async def main() -> None:
        async with app.run_test(size=size) as pilot:
            await scenario(pilot)

    asyncio.run(main())


async def shows(pilot: Any, *texts: str) -> None:
    """Wait until the screen shows every one of ``texts``."""
    await wait_for(pilot, lambda: all(t in screen_text(pilot.app) for t in texts))
