"""The demo passes on other numerics, not on one lucky run: other thread counts, seeds and CPU kernels.

CPUs differ in vector extensions and thread counts, so training on them is not bit-identical: a demo that
passes on one machine and fails on another (it failed on an AVX2-only AMD EPYC) has no margin. Each case
runs ``jobs/demo-tiny.toml`` end to end with a different ``[train] seed`` and a different
``OMP_NUM_THREADS``; one case also forces torch's AVX2 kernels where the CPU has wider ones
(``ATEN_CPU_CAPABILITY``, and oneDNN's ``ONEDNN_MAX_CPU_ISA``), the machine the demo once failed on. Every run must pass all of the demo's
smoke prompts (reasoning closed with ``</think>``, the trained answer format, a stop before the limit).
"""

from __future__ import annotations

import json
import os
import platform
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow
ROOT = Path(__file__).resolve().parent.parent
DEMO = ROOT / "jobs" / "demo-tiny.toml"
X86 = platform.machine().lower() in ("x86_64", "amd64")

CASES = [
    pytest.param(1, 11, None, id="1-thread-seed-11"),
    pytest.param(2, 22, None, id="2-threads-seed-22"),
    pytest.param(2, 33, "avx2" if X86 else None, id="2-threads-seed-33-avx2-kernels"),
]


def demo_with_seed(tmp_path: Path, seed: int) -> Path:
    """A copy of the demo job with another ``[train] seed`` (its data found by absolute path)."""
    text = DEMO.read_text()
    source = 'source = "data/medical-cot-tiny.jsonl"'
    assert source in text and "\n[train]\n" in text
    text = text.replace(source, f'source = "{(DEMO.parent / "data" / "medical-cot-tiny.jsonl").as_posix()}"')
    text = text.replace("\n[train]\n", f"\n[train]\nseed = {seed}\n")
    job = tmp_path / "demo-seeded.toml"
    job.write_text(text)
    return job


@pytest.mark.parametrize(("threads", "seed", "kernels"), CASES)
def test_demo_passes_on_other_numerics(tmp_path: Path, threads: int, seed: int, kernels: str | None) -> None:
    env = {
        **os.environ,
        "TUNEQ_HOME": str(tmp_path / "home"),
        "HF_HUB_OFFLINE": "1",
        "OMP_NUM_THREADS": str(threads),
    }
    if kernels:  # torch's own kernels, and oneDNN's: alone, torch picks AMX/AVX-512 packing it then lacks
        env["ATEN_CPU_CAPABILITY"] = kernels
        env["ONEDNN_MAX_CPU_ISA"] = kernels.upper()
    run_dir = tmp_path / "run"
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "runner",
            "run",
            str(demo_with_seed(tmp_path, seed)),
            "--run-dir",
            str(run_dir),
        ],
        capture_output=True,
        text=True,
        env=env,
        cwd=ROOT,
        timeout=1800,
    )
    smoke = run_dir / "smoke.json"
    answers = json.loads(smoke.read_text())["results"] if smoke.exists() else []
    assert result.returncode == 0, result.stdout[-2500:] + json.dumps(answers, indent=1)[-2500:]
    assert len(answers) >= 2 and all(a["ok"] and a["finish_reason"] == "stop" for a in answers)
    report = json.loads((run_dir / "report.json").read_text())
    assert report["ok"]
