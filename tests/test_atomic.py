"""Files and folders written aside and renamed (runner/core/atomic.py): whole or not at all, no temporary
left, even when the writer is killed midway."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from runner.core.atomic import aside, building, is_aside, replaced, write_atomic


def test_a_write_replaces_the_file_and_leaves_no_temporary(tmp_path: Path) -> None:
    path = tmp_path / "report.json"
    path.write_text("old")
    write_atomic(path, "new ü")
    assert path.read_text(encoding="utf-8") == "new ü"
    assert [p.name for p in tmp_path.iterdir()] == ["report.json"]


def test_a_failed_write_keeps_the_old_file(tmp_path: Path) -> None:
    path = tmp_path / "smoke.json"
    path.write_text("old")
    with pytest.raises(OSError, match="disk full"), replaced(path) as tmp:
        tmp.write_text("half")
        raise OSError("disk full")
    assert path.read_text() == "old"
    assert [p.name for p in tmp_path.iterdir()] == ["smoke.json"]


def test_a_folder_replaces_the_old_folder_whole(tmp_path: Path) -> None:
    folder = tmp_path / "merged"
    folder.mkdir()
    (folder / "stale.safetensors").write_text("old")
    aside(folder).mkdir()  # left by a writer that crashed: cleared first
    (aside(folder) / "half").write_text("x")
    with replaced(folder) as tmp:
        assert not tmp.exists()
        tmp.mkdir()
        (tmp / "model.safetensors").write_text("new")
    assert sorted(p.name for p in folder.iterdir()) == ["model.safetensors"]
    assert [p.name for p in tmp_path.iterdir()] == ["merged"]


def test_a_killed_writer_leaves_the_final_name_alone(tmp_path: Path) -> None:
    path = tmp_path / "events.json"
    path.write_text("old")
    started = tmp_path / "started"
    writer = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import sys, time\nfrom pathlib import Path\nfrom runner.core.atomic import replaced\n"
            "with replaced(Path(sys.argv[1])) as tmp:\n"
            "    tmp.write_text('half')\n    Path(sys.argv[2]).touch()\n    time.sleep(60)\n",
            str(path),
            str(started),
        ],
        env={**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parent.parent)},
    )
    deadline = time.monotonic() + 60
    while not started.exists():
        assert writer.poll() is None and time.monotonic() < deadline
        time.sleep(0.05)
    writer.send_signal(signal.SIGKILL)
    writer.wait()
    assert path.read_text() == "old" and aside(path).exists()  # the half file only under its temporary name
    write_atomic(path, "new")  # the next writer clears it
    assert path.read_text() == "new" and not aside(path).exists()


def test_building_a_shared_folder_makes_it_readable_to_all(tmp_path: Path) -> None:
    dest = tmp_path / "cache" / "tiny"
    with building(dest) as work:
        assert is_aside(work.relative_to(tmp_path)) and work.parent == dest.parent
        (work / "config.json").write_text("{}")
    assert (dest / "config.json").read_text() == "{}"
    assert dest.stat().st_mode & 0o755 == 0o755
    assert [p.name for p in dest.parent.iterdir()] == ["tiny"]
