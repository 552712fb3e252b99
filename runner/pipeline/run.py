"""Chain the stages over one run directory; reuse finished ones; always end with a report and ``job_end``.

A stage is reused when its marker (``.stages/<name>.json``) holds the same key — a hash of the spec
sections the stage depends on — and its outputs exist. Once a stage runs, every later stage runs too.
"""

from __future__ import annotations

import json
import sys
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TextIO

from runner.core.events import Artifact, Error, EventWriter, JobEnd, StageEnd, StageStart
from runner.core.failures import DISK_FULL, DISK_HINT, hint, is_disk_full
from runner.core.rundir import EXIT_BUSY, LAYOUT, RunDir, RunDirBusy
from runner.core.secrets import write_redacted_json
from runner.dataset.read import DataError
from runner.llamacpp.converter import ConverterMissing
from runner.models.resolve import ModelNotFound
from runner.pipeline.context import StageContext, StageFailed
from runner.pipeline.disk import SpaceReserve
from runner.pipeline.report import write_report
from runner.pipeline.stages import data, fidelity, gguf, lora, merged, quantize, ship, smoke, train
from runner.pipeline.stopping import EXIT_STOPPED, Stopped, StopSignal
from runner.spec.load import run_spec
from runner.spec.stages import stage_key


@dataclass(frozen=True)
class Stage:
    """A pipeline step: its function and what it always writes (relative to the run directory), beside
    its artifacts. The spec sections whose change makes it run again: :data:`runner.core.stages.STAGE_INPUTS`."""

    name: str
    run: Callable[[StageContext], dict[str, Any]]
    leaves: tuple[str, ...] = ()


STAGES = (
    Stage("data", data.run, leaves=(str(LAYOUT.data_dir),)),
    Stage("train", train.run, leaves=(str(LAYOUT.lora),)),
    Stage("lora", lora.run),
    Stage("merged", merged.run, leaves=(str(LAYOUT.merged),)),
    Stage("gguf", gguf.run),
    Stage("quantize", quantize.run),
    Stage("smoke", smoke.run, leaves=(str(LAYOUT.smoke),)),
    Stage("fidelity", fidelity.run),
    Stage("ship", ship.run),
)
_KNOWN_FAILURES = (StageFailed, DataError, ConverterMissing, ModelNotFound)


def _reusable(run: RunDir, stage: Stage, key: str) -> dict[str, Any] | None:
    try:
        marker = json.loads(run.stage_marker(stage.name).read_text())
    except (FileNotFoundError, json.JSONDecodeError):
        return None
    if marker.get("key") != key or not all((run.root / p).exists() for p in marker.get("outputs", [])):
        return None
    return marker


def _outputs(stage: Stage, result: dict[str, Any]) -> list[str]:
    """What must still exist for the stage to be reused: what it leaves and the artifacts it recorded."""
    found = [a["path"] for a in result.get("artifacts", [])] + (
        [result["artifact"]["path"]] if "artifact" in result else []
    )
    return [*stage.leaves, *found]


def run_pipeline(run_dir: Path, echo: TextIO | None = None) -> int:
    """Run every stage of the job in ``run_dir``; return the exit code (0 ok, 1 failed, 75 busy, 143 stopped).

    SIGTERM/SIGINT stop it (:mod:`runner.pipeline.stopping`): the job ends with ``job_end`` marked
    ``stopped``, which the worker records as interrupted or cancelled, never as failed.

    One pipeline at a time works in a run directory: it holds the directory's lock for its life, and a
    second one exits at once with :data:`EXIT_BUSY` and one line on stderr, writing no event.
    """
    stop = StopSignal()
    run = RunDir(run_dir)
    try:
        with run.locked(), stop.installed():
            return _run_stages(run, stop, echo)
    except RunDirBusy as exc:
        print(f"tuneq pipeline: {exc}", file=sys.stderr)
        return EXIT_BUSY


def _run_stages(run: RunDir, stop: StopSignal, echo: TextIO | None) -> int:
    info = run.read_job_info()
    spec = run_spec(run)
    ctx = StageContext(spec, run, info, EventWriter(run.events, str(info["job"]), echo), stop=stop)
    results = ctx.results
    timings: dict[str, dict[str, Any]] = {}
    failure: dict[str, Any] | None = None
    code = 0
    rerun = False
    run.stages.mkdir(parents=True, exist_ok=True)
    reserve = SpaceReserve(run.reserve)
    for stage in STAGES:
        key = stage_key(spec, stage.name)
        ctx.stage, ctx.stage_key = stage.name, key
        started = time.monotonic()
        try:  # the events too: a disk that fills while one is written fails the stage, not the pipeline
            marker = None if rerun else _reusable(run, stage, key)
            if marker is not None:
                ctx.emit(StageStart(reused="finished earlier with the same settings"))
                ctx.emit(StageEnd(ok=True, seconds=0.0, reused=True))
                results[stage.name], timings[stage.name] = (
                    marker["result"],
                    {"seconds": marker["seconds"], "reused": True},
                )
                continue
            rerun = True
            ctx.emit(StageStart())
            with stop.interruptible():
                result = stage.run(ctx)
            seconds = round(time.monotonic() - started, 2)
            _write_marker(run, stage, key, seconds, result)
            results[stage.name], timings[stage.name] = result, {"seconds": seconds, "reused": False}
            ctx.emit(StageEnd(ok=True, seconds=seconds))
        except BaseException as exc:
            reserve.release()  # room for the last words, should the disk be full
            seconds = round(time.monotonic() - started, 2)
            failure, code = _describe_failure(exc, stage.name, stop)
            ctx.emit(Error(cause=failure["cause"], hint=failure["hint"]))
            ctx.emit(StageEnd(ok=False, seconds=seconds, stopped=code == EXIT_STOPPED))
            timings[stage.name] = {"seconds": seconds, "reused": False}
            break
    reserve.release()
    ctx.stage = "report"
    report_path = write_report(ctx, results, timings, failure)
    ctx.emit(
        Artifact(path=str(report_path.relative_to(run.root)), kind="report", bytes=report_path.stat().st_size)
    )
    # the file the smoke stage ran, once it passed (runner.core.tested reads it back)
    tested = str(ctx.gguf_file(spec.smoke.gguf).relative_to(run.root)) if "smoke" in results else None
    ctx.emit(
        JobEnd(
            ok=failure is None,
            exit_code=code,
            stopped=code == EXIT_STOPPED,
            reason=failure["cause"] if failure else None,
            tested_gguf=tested,
            tested_quant=spec.smoke.gguf if tested else None,
        )
    )
    return code


def _write_marker(run: RunDir, stage: Stage, key: str, seconds: float, result: dict[str, Any]) -> None:
    """Mark ``stage`` done (written aside and renamed: a full disk never leaves half a marker)."""
    marker = {"key": key, "seconds": seconds, "result": result, "outputs": _outputs(stage, result)}
    write_redacted_json(run.stage_marker(stage.name), marker)


def _describe_failure(exc: BaseException, stage: str, stop: StopSignal) -> tuple[dict[str, Any], int]:
    """The error event's fields and the exit code; after a stop signal the stage was stopped, whatever
    its code raised then (a child killed by the same signal is no failure)."""
    if stop.requested or isinstance(exc, Stopped | SystemExit | KeyboardInterrupt):
        return {"cause": f"stopped by {stop.describe()} during the {stage} stage", "hint": None}, EXIT_STOPPED
    if is_disk_full(exc):
        return {"cause": f"{stage}: {DISK_FULL}", "hint": DISK_HINT}, 1
    if isinstance(exc, _KNOWN_FAILURES):
        return {"cause": str(getattr(exc, "cause", exc)), "hint": getattr(exc, "hint", None)}, 1
    traceback.print_exc(file=sys.stderr)
    text = f"{type(exc).__name__}: {exc}"
    return {"cause": text.splitlines()[0][:500], "hint": hint(text)}, 1
