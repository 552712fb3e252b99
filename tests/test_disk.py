"""Disk space at export, on a real small filesystem (an 8 MB tmpfs): the merged, gguf and quantize stages
refuse to start without room, a disk that fills mid-stage fails with that cause, and no partial artifact
is left or taken for done. `tuneq validate` prints the estimate."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from runner.backends.base import Launch
from runner.backends.local import LocalBackend
from runner.commands.staging import prepare_run_dir
from runner.core.events import Error, EventTail, EventWriter, JobEnd, Log, Progress, StageStart, read_events
from runner.core.failures import DISK_FULL, DISK_HINT
from runner.core.rundir import RunDir
from runner.pipeline.artifacts import run_converter
from runner.pipeline.checkpoints import damage
from runner.pipeline.context import StageContext, StageFailed
from runner.pipeline.run import _describe_failure
from runner.pipeline.stages import gguf, merged, quantize
from runner.pipeline.stopping import StopSignal
from runner.spec import load_spec, parse_spec

ROOT = Path(__file__).resolve().parent.parent
MB = 10**6


@pytest.fixture
def small_disk(tmp_path: Path) -> Iterator[Path]:
    """An 8 MiB tmpfs; skipped where mounting one is not permitted."""
    mount = tmp_path / "disk"
    mount.mkdir()
    done = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=8m", "tmpfs", str(mount)], capture_output=True, text=True
    )
    if done.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {done.stderr.strip()}")
    try:
        yield mount
    finally:
        subprocess.run(["umount", "-l", str(mount)], check=False)


def _base(tmp_path: Path, hidden: int, layers: int, vocab: int) -> Path:
    """A local base model's config.json (its size is all the disk check reads)."""
    base = tmp_path / f"base-{hidden}"
    base.mkdir()
    config = {
        "hidden_size": hidden,
        "intermediate_size": 3 * hidden,
        "num_hidden_layers": layers,
        "num_attention_heads": 4,
        "vocab_size": vocab,
    }
    (base / "config.json").write_text(json.dumps(config))
    return base


def _ctx(
    run_root: Path, base: Path | str = "tuneq:tiny-llama", quants: str = '"f16", "q4_k_m"'
) -> StageContext:
    spec = parse_spec(
        f'name = "x"\n[model]\nbase = "{base}"\n[data]\nsource = "d.jsonl"\n[export]\ngguf = [{quants}]\n',
        "test.toml",
    )
    run = RunDir(run_root)
    return StageContext(spec, run, {"job": "1"}, EventWriter(run.events, "1"))


def _fill(path: Path, size: int) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"\1" * size)


def test_each_export_stage_fails_before_writing_without_room(small_disk: Path, tmp_path: Path) -> None:
    # merged: a 2.2M-parameter base → 4.4 MB merged + 4.4 MB f16 + 1.3 MB Q4_K_M, on 8 MB
    ctx = _ctx(small_disk / "m", _base(tmp_path, 256, 2, 1024))
    with pytest.raises(StageFailed, match=r"^merged: needs 11 MB, 8 MB free on the disk of ") as info:
        merged.run(ctx)
    assert info.value.hint == DISK_HINT and not ctx.run.merged.exists()

    # gguf: 4 MB of merged weights on the disk → a 4 MB f16 GGUF and a 1.2 MB Q4_K_M, 4 MB left
    ctx = _ctx(small_disk / "g")
    _fill(ctx.run.merged / "model.safetensors", 4 * MB)
    with pytest.raises(StageFailed, match=r"^gguf: needs 5 MB, 4 MB free") as info:
        gguf.run(ctx)
    assert info.value.hint == DISK_HINT and not ctx.run.gguf.exists()
    (ctx.run.merged / "model.safetensors").unlink()

    # quantize: a 3 MB f16 GGUF → Q4_K_M + Q8_0 need 2.7 MB, 2 MB left beside a 3 MB file
    ctx = _ctx(small_disk / "q", quants='"f16", "q4_k_m", "q8_0"')
    _fill(ctx.gguf_file("f16"), 3 * MB)
    _fill(small_disk / "ballast", 3 * MB)
    with pytest.raises(StageFailed, match=r"^quantize: needs 3 MB, 2 MB free") as info:
        quantize.run(ctx)
    assert info.value.hint == DISK_HINT
    assert sorted(p.name for p in ctx.run.gguf.iterdir()) == [ctx.gguf_file("f16").name]


def test_a_converter_that_fills_the_disk_fails_with_that_cause_and_leaves_nothing(
    small_disk: Path, tmp_path: Path
) -> None:
    converter = tmp_path / "convert_fill.py"
    converter.write_text(
        "import sys\n"
        "with open(sys.argv[sys.argv.index('--outfile') + 1], 'wb') as out:\n"
        "    for _ in range(40):\n"
        "        out.write(b'x' * 500_000)\n"
        "        out.flush()\n"
    )
    ctx = _ctx(small_disk / "run")
    out = ctx.run.gguf / "x-f16.gguf"
    out.parent.mkdir(parents=True)
    with pytest.raises(StageFailed) as info:
        run_converter(ctx, converter, [], out)
    assert info.value.cause == f"convert_fill.py failed (exit 1): {DISK_FULL}"
    assert info.value.hint == DISK_HINT
    assert list(out.parent.iterdir()) == []  # no partial file, under its final name or the temporary one
    assert os.statvfs(small_disk).f_bavail * os.statvfs(small_disk).f_frsize > 7 * MB  # the space is back


def test_a_quantize_that_fills_the_disk_fails_with_that_cause_and_leaves_nothing(
    small_disk: Path, tmp_path: Path
) -> None:
    """The real converter and llama.cpp's quantizer on the built-in tiny model (a 4.5 MB f16 GGUF)."""
    from runner.llamacpp.converter import converter_script
    from runner.models.resolve import resolve_base
    from runner.spec.quants import known_ftypes

    f16 = tmp_path / "tiny-f16.gguf"
    command = [sys.executable, str(converter_script()), resolve_base("tuneq:tiny-llama"), "--outtype", "f16"]
    subprocess.run([*command, "--outfile", str(f16)], check=True, capture_output=True)
    src = small_disk / "f16.gguf"
    src.write_bytes(f16.read_bytes())
    _fill(small_disk / "ballast", 2 * MB)  # leaves ~1.9 MB: a 2.4 MB Q8_0 does not fit
    dst = small_disk / "tiny-Q8_0.gguf"
    with pytest.raises(StageFailed) as info:
        quantize.quantize_file(src, dst, known_ftypes()["q8_0"], threads=2)
    assert (info.value.cause, info.value.hint) == (
        f"llama_model_quantize could not write {dst.name}: {DISK_FULL}",
        DISK_HINT,
    )
    assert sorted(p.name for p in small_disk.iterdir()) == ["ballast", "f16.gguf"]


class _FillingModel:
    """Stands in for the trained model: its merged save writes shards until the disk is full."""

    def save_pretrained_merged(self, folder: str, tokenizer: Any, save_method: str) -> None:
        Path(folder).mkdir(parents=True, exist_ok=True)
        for shard in range(20):
            (Path(folder) / f"model-{shard}.safetensors").write_bytes(b"\0" * MB)


def test_a_merge_that_fills_the_disk_fails_the_job_with_that_cause_and_leaves_nothing(
    small_disk: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    for name in ("UNSLOTH_DISABLE_STATISTICS", "UNSLOTH_COMPILE_LOCATION", "TOKENIZERS_PARALLELISM"):
        monkeypatch.setenv(name, os.environ.get(name, ""))  # restored after the stage sets them
    ctx = _ctx(small_disk / "run", _base(tmp_path, 64, 1, 256))  # small enough to pass the check
    ctx.handoff.model = _FillingModel()
    with pytest.raises(OSError) as info:
        merged.run(ctx)
    failure, code = _describe_failure(info.value, "merged", StopSignal())
    assert (failure, code) == ({"cause": f"merged: {DISK_FULL}", "hint": DISK_HINT}, 1)
    left = [p.name for p in ctx.run.root.iterdir()]
    assert left == ["events.jsonl"]  # the stage's progress events; no merged/, no merged.tmp


def test_validate_prints_the_disk_the_export_needs(tmp_path: Path) -> None:
    job = tmp_path / "job.toml"
    data = ROOT / "jobs" / "data" / "medical-cot-tiny.jsonl"
    job.write_text(
        'name = "x"\n[model]\nbase = "tuneq:random-r1-qwen-1.5b"\n'
        f'[data]\nsource = "{data}"\nformat = "columns"\n'
        '[data.columns]\nprompt = "Question"\nreasoning = "Complex_CoT"\nresponse = "Response"\n'
        '[export]\ngguf = ["f16", "q4_k_m", "q8_0"]\n'
    )
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TUNEQ_HOME": str(tmp_path / "home")}
    done = subprocess.run(
        [sys.executable, "-m", "runner", "validate", str(job)],
        capture_output=True,
        text=True,
        env=env,
        cwd=ROOT,
    )
    assert done.returncode == 0, done.stderr
    assert (
        "  disk      ~10.1 GB written by export "
        "(merged 16-bit 3.6 GB, f16 GGUF 3.6 GB, q4_k_m + q8_0 3.0 GB)\n" in done.stdout
    )


DISK_PIPELINE = [sys.executable, str(Path(__file__).with_name("disk_pipeline.py"))]


def _run_on(run: RunDir, spec: Any) -> int:
    """Run tests/disk_pipeline.py in ``run`` as the worker does (own process group, log.txt)."""
    backend = LocalBackend(DISK_PIPELINE)
    handle = backend.start(Launch("7", run.root, spec))
    deadline = time.monotonic() + 180
    while (outcome := backend.poll(handle)) is None:
        assert time.monotonic() < deadline, "the pipeline did not end"
        time.sleep(0.1)
    return outcome.exit_code


@pytest.mark.parametrize(
    ("words", "cause"),
    [
        ("checkpoints steps=40", f"saving a checkpoint: {DISK_FULL}"),  # torch: RuntimeError "unexpected pos"
        ("chatty steps=3000", f"train: {DISK_FULL}"),  # the events file fills the disk
    ],
)
def test_a_disk_that_fills_in_training_ends_the_job_with_its_cause_report_and_job_end(
    small_disk: Path, make_job: Any, words: str, cause: str
) -> None:
    loaded = load_spec(make_job("full", words))
    run = prepare_run_dir(loaded, small_disk / "run", "7")
    assert _run_on(run, loaded.spec) == 1, run.log.read_text()[-2000:]
    events = read_events(run.events)
    errors = [e for e in events if isinstance(e, Error)]
    assert [(e.cause, e.hint) for e in errors] in (
        [(cause, DISK_HINT)],
        [(f"train: {DISK_FULL}", DISK_HINT)],
    )
    assert events[-1] == JobEnd(
        stage="report", t=events[-1].t, job="7", ok=False, exit_code=1, reason=errors[0].cause
    )
    assert json.loads(run.report.read_text())["failure"]["cause"] == errors[0].cause
    assert all(damage(folder) is None for folder in run.checkpoints.glob("checkpoint-*"))  # none partial
    assert not (run.root / ".reserve").exists()
    subprocess.run(["mount", "-o", "remount,size=64m", str(small_disk)], check=True)  # space is freed
    offset = run.events.stat().st_size
    assert _run_on(run, loaded.spec) == 0, run.log.read_text()[-2000:]
    again = EventTail(run.events, offset).read_new()  # the next attempt's first event is not swallowed
    assert isinstance(again[0], StageStart) and again[0].stage == "train"
    assert isinstance(again[-1], JobEnd) and again[-1].ok
    if "checkpoints" in words:
        assert any(isinstance(e, Log) and e.message.startswith("resuming from checkpoint-") for e in again)


def test_an_event_written_after_a_torn_line_starts_on_a_fresh_line(tmp_path: Path) -> None:
    path = tmp_path / "events.jsonl"
    writer = EventWriter(path, "1")
    writer.emit(Progress(stage="train", step=1))
    with path.open("ab") as out:
        out.write(b'{"v": 1, "t": "2026-12-06T01:00:00.000Z", "job": "1", "stage": "tr')  # a full disk cut it
    writer.emit(StageStart(stage="train"))  # the next attempt
    assert [(type(e), e.stage) for e in read_events(path)] == [(Progress, "train"), (StageStart, "train")]
