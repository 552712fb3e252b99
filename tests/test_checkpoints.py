"""Checkpoints on real files (torch.save, safetensors, trainer_state.json): a damaged newest one is never
resumed from; training falls back to the newest intact one and says so; a save cut short by a full disk (a
real 8 MiB tmpfs) leaves no partial checkpoint and is named as a full disk."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest
from conftest import DATA, ROOT
from test_disk import small_disk  # noqa: F401  (the tmpfs fixture)

from runner.commands.staging import prepare_run_dir
from runner.core.events import EventTail, Log
from runner.core.failures import DISK_FULL, DISK_HINT
from runner.pipeline.checkpoints import damage, newest_intact, no_partial_checkpoint
from runner.pipeline.context import StageFailed
from runner.spec import load_spec

torch = pytest.importorskip("torch")
save_file = pytest.importorskip("safetensors.torch").save_file
KEY = "settings-hash"
DEMO = ROOT / "jobs" / "demo-tiny.toml"


def save(checkpoints: Path, step: int) -> Path:
    """A checkpoint as the trainer writes a LoRA one: weights, optimizer, scheduler, RNG, state last."""
    folder = checkpoints / f"checkpoint-{step}"
    folder.mkdir(parents=True)
    save_file(
        {"base_model.model.layers.0.q_proj.lora_A.weight": torch.randn(8, 64)},
        folder / "adapter_model.safetensors",
    )
    (folder / "adapter_config.json").write_text(json.dumps({"r": 8}))
    torch.save({"state": {0: {"exp_avg": torch.randn(8, 64)}}}, folder / "optimizer.pt")
    torch.save({"last_epoch": step}, folder / "scheduler.pt")
    torch.save({"python": 1, "cpu": torch.get_rng_state()}, folder / "rng_state.pth")
    (folder / "trainer_state.json").write_text(json.dumps({"global_step": step, "log_history": []}))
    return folder


def truncate(path: Path) -> None:
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])


def flip_a_byte(path: Path) -> None:
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0xFF
    path.write_bytes(bytes(data))


DAMAGE: dict[str, Callable[[Path], None]] = {
    "optimizer cut short": lambda f: truncate(f / "optimizer.pt"),
    "optimizer with a flipped byte": lambda f: flip_a_byte(f / "optimizer.pt"),
    "adapter cut short": lambda f: truncate(f / "adapter_model.safetensors"),
    "rng state cut short": lambda f: truncate(f / "rng_state.pth"),
    "trainer state cut short": lambda f: truncate(f / "trainer_state.json"),
    "no trainer state": lambda f: (f / "trainer_state.json").unlink(),
    "no weights": lambda f: (f / "adapter_model.safetensors").unlink(),
}


@pytest.mark.parametrize("kind", DAMAGE)
def test_a_damaged_newest_checkpoint_falls_back_to_the_newest_intact_one(tmp_path: Path, kind: str) -> None:
    checkpoints = tmp_path / "checkpoints"
    checkpoints.mkdir()
    (checkpoints / "tuneq-key.txt").write_text(KEY)
    for step in (5, 10, 15):
        save(checkpoints, step)
    DAMAGE[kind](checkpoints / "checkpoint-15")
    lines: list[str] = []
    assert newest_intact(checkpoints, KEY, lines.append) == checkpoints / "checkpoint-10"
    (line,) = lines
    assert line.startswith("checkpoint-15 is damaged (") and line.endswith(
        "and was removed: resuming from checkpoint-10, the newest intact checkpoint"
    )
    assert sorted(p.name for p in checkpoints.glob("checkpoint-*")) == ["checkpoint-10", "checkpoint-5"]


def test_intact_checkpoints_pass_and_with_none_intact_training_starts_afresh(tmp_path: Path) -> None:
    checkpoints = tmp_path / "checkpoints"
    checkpoints.mkdir()
    (checkpoints / "tuneq-key.txt").write_text(KEY)
    assert damage(save(checkpoints, 3)) is None
    lines: list[str] = []
    assert newest_intact(checkpoints, KEY, lines.append) == checkpoints / "checkpoint-3"
    assert lines == []
    truncate(checkpoints / "checkpoint-3" / "optimizer.pt")
    assert newest_intact(checkpoints, KEY, lines.append) is None
    assert lines[0].endswith("no intact checkpoint is left, training starts afresh")


def test_a_checkpoint_save_that_fills_the_disk_is_named_and_leaves_nothing_partial(
    small_disk: Path,  # noqa: F811
) -> None:
    checkpoints = small_disk / "checkpoints"
    intact = save(checkpoints, 1)
    ballast = small_disk / "ballast"
    with pytest.raises(OSError), ballast.open("wb") as out:  # fill the disk to the last byte
        while True:
            out.write(b"\1" * 65536)
    lines: list[str] = []
    with pytest.raises(StageFailed) as info, no_partial_checkpoint(checkpoints, lines.append):
        folder = checkpoints / "checkpoint-2"
        folder.mkdir()
        torch.save({"state": torch.zeros(256, 1024)}, folder / "optimizer.pt")  # torch: "unexpected pos"
    assert (info.value.cause, info.value.hint) == (f"saving a checkpoint: {DISK_FULL}", DISK_HINT)
    assert "unexpected pos" in str(info.value.__cause__)
    assert [p.name for p in checkpoints.glob("checkpoint-*")] == [intact.name]  # the partial one is gone
    assert lines == ["removed the partial checkpoint checkpoint-2"]
    shutil.rmtree(intact)


TRAIN_ONLY = (  # the real pipeline's data and train stages
    "import sys\nfrom pathlib import Path\nfrom runner.pipeline import run\n"
    "run.STAGES = run.STAGES[:2]\nsys.exit(run.run_pipeline(Path(sys.argv[1])))\n"
)


@pytest.mark.slow
@pytest.mark.timeout(1800)
def test_real_training_resumes_from_the_newest_intact_checkpoint(home: Path, tmp_path: Path) -> None:
    """The demo's tiny model trains 10 steps with a checkpoint every 5; the newest is then cut short, as a
    full disk or a bad copy leaves it. The next run resumes from checkpoint-5 and says why."""
    (tmp_path / "demo" / "data").mkdir(parents=True)
    shutil.copy(DATA, tmp_path / "demo" / "data" / DATA.name)
    job = tmp_path / "demo" / "demo.toml"
    text = (
        DEMO.read_text()
        .replace("max_steps = 60", "max_steps = 10")
        .replace("save_steps = 20", "save_steps = 5")
    )
    job.write_text(text)
    loaded = load_spec(job)
    run = prepare_run_dir(loaded, tmp_path / "run", "demo")
    command = [sys.executable, "-c", TRAIN_ONLY, str(run.root)]
    first = subprocess.run(command, capture_output=True, text=True, timeout=1200)
    assert first.returncode == 0, first.stderr[-3000:]
    assert [damage(f) for f in sorted(run.checkpoints.glob("checkpoint-*"))] == [None, None]  # real ones pass
    truncate(run.checkpoints / "checkpoint-10" / "optimizer.pt")
    (run.stages / "train.json").unlink()  # train again: it resumes
    offset = run.events.stat().st_size
    second = subprocess.run(command, capture_output=True, text=True, timeout=1200)
    assert second.returncode == 0, second.stderr[-3000:]
    messages = [e.message for e in EventTail(run.events, offset).read_new() if isinstance(e, Log)]
    assert any(
        m.startswith(
            "checkpoint-10 is damaged (optimizer.pt: truncated or not a torch file) and was removed: "
            "resuming from checkpoint-5"
        )
        for m in messages
    ), messages
    assert json.loads((run.stages / "train.json").read_text())["result"]["resumed_from_step"] == 5
