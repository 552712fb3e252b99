"""Wall time of the demo job per stage on this machine (issue 2's target: <= 90 s in total after install).

    just bench-demo          (or: .venv/bin/python bench/bench_demo.py [--repeat N])

Each repeat runs ``tuneq run jobs/demo-tiny.toml`` into a fresh run directory (the tiny model is cached
in ~/.cache/tuneq after the first build, which is reported separately when it happens).
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
STAGES = ("data", "train", "lora", "merged", "gguf", "quantize", "smoke")


def one_run(workdir: Path) -> tuple[float, dict[str, float]]:
    run_dir = workdir / f"run-{time.monotonic_ns()}"
    started = time.monotonic()
    subprocess.run(
        [sys.executable, "-m", "runner", "run", "jobs/demo-tiny.toml", "--run-dir", str(run_dir)],
        cwd=ROOT,
        check=True,
        capture_output=True,
    )
    wall = time.monotonic() - started
    report = json.loads((run_dir / "report.json").read_text())
    return wall, {s: report["stages"][s]["seconds"] for s in STAGES}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        runs = [one_run(Path(tmp)) for _ in range(args.repeat)]
    print(f"demo-tiny, {args.repeat} runs (median seconds)")
    print(f"{'stage':<10}{'median':>8}{'min':>8}{'max':>8}")
    for stage in STAGES:
        values = [r[1][stage] for r in runs]
        print(f"{stage:<10}{statistics.median(values):>8.1f}{min(values):>8.1f}{max(values):>8.1f}")
    walls = [r[0] for r in runs]
    print(
        f"{'wall':<10}{statistics.median(walls):>8.1f}{min(walls):>8.1f}{max(walls):>8.1f}  (incl. start-up)"
    )


if __name__ == "__main__":
    main()
