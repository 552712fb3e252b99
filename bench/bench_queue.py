"""Queue latencies: submit and ``status`` with 10,000 jobs in the store, and submit → pipeline start
with an idle worker (target ≤ 2 s). Runs in a temporary state directory with a stand-in pipeline.

    .venv/bin/python bench/bench_queue.py [--jobs 10000]
"""

from __future__ import annotations

import argparse
import os
import shlex
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from runner import commands  # noqa: E402
from runner.cli.queue_view import jobs_table  # noqa: E402
from runner.store import Store  # noqa: E402

STARTED = "import pathlib, sys, time; pathlib.Path(sys.argv[1], 'started').write_text(repr(time.time()))\n"


def job_file(directory: Path) -> Path:
    (directory / "data").mkdir(parents=True)
    shutil.copy(ROOT / "jobs" / "data" / "medical-cot-tiny.jsonl", directory / "data")
    path = directory / "bench.toml"
    path.write_text(
        'name = "bench"\n[model]\nbase = "tuneq:tiny-llama"\n[data]\nsource = "data/medical-cot-tiny.jsonl"\n'
    )
    return path


def timed(fn: Callable[[], object]) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def row(label: str, samples: list[float]) -> str:
    ms = sorted(s * 1000 for s in samples)
    p95 = ms[min(len(ms) - 1, int(0.95 * len(ms)))]
    return f"| {label:<50} | {len(ms):>6} | {statistics.median(ms):>9.1f} | {p95:>9.1f} | {ms[-1]:>9.1f} |"


def cli(*argv: str) -> float:
    """Wall time of one ``python -m runner ...`` (interpreter start included)."""
    start = time.perf_counter()
    subprocess.run(
        [sys.executable, "-m", "runner", *argv],
        check=True,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        cwd=ROOT,
    )
    return time.perf_counter() - start


def bench_store(home: Path, n: int) -> list[str]:
    os.environ["TUNEQ_HOME"] = str(home / "state")
    path = job_file(home / "jobs")
    rows = []
    with Store() as store:
        submits = [timed(lambda: commands.submit(store, [path])) for _ in range(n)]
        rows.append(row("submit, in process (first 100)", submits[:100]))
        rows.append(row(f"submit, in process (last 1000, ~{n:,} in store)", submits[-1000:]))
        rows.append(row(f"list_jobs() with {n:,} jobs", [timed(store.list_jobs) for _ in range(10)]))
        rows.append(
            row(
                f"list_jobs() + table with {n:,} jobs",
                [timed(lambda: jobs_table(store.list_jobs(), time.time())) for _ in range(10)],
            )
        )
    for argv in (["submit", str(path)], ["status"], ["status", "--json"]):
        shown = "submit FILE" if argv[0] == "submit" else " ".join(argv)
        rows.append(row(f"`tuneq {shown}` (process) with {n:,} jobs", [cli(*argv) for _ in range(5)]))
    return rows


def bench_start(home: Path, repeats: int) -> list[str]:
    os.environ["TUNEQ_HOME"] = str(home / "idle")
    script = home / "started.py"
    script.write_text(STARTED)
    os.environ["TUNEQ_PIPELINE_CMD"] = shlex.join([sys.executable, str(script)])
    path = job_file(home / "idle-jobs")
    worker = subprocess.Popen([sys.executable, "-m", "runner.worker"], stdout=subprocess.DEVNULL, cwd=ROOT)
    delays = []
    try:
        with Store() as store:
            while not store.workers():
                time.sleep(0.05)
            for _ in range(repeats):
                time.sleep(0.5)  # let the worker go idle
                submitted = time.time()
                (job,) = commands.submit(store, [path])
                marker = Path(job.run_dir) / "started"
                while not marker.exists() or not marker.read_text():
                    time.sleep(0.005)
                delays.append(float(marker.read_text()) - submitted)
                while not store.get(job.id).state.is_finished:
                    time.sleep(0.02)
    finally:
        worker.terminate()
        worker.wait()
    return [row("submit → pipeline process running (idle worker)", delays)]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--jobs", type=int, default=10_000)
    parser.add_argument("--starts", type=int, default=20)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="tuneq-bench-") as tmp:
        home = Path(tmp)
        rows = bench_start(home, args.starts) + bench_store(home, args.jobs)
    print(f"| {'measure':<50} | {'n':>6} | {'median ms':>9} | {'p95 ms':>9} | {'max ms':>9} |")
    print(f"|{'-' * 52}|{'-' * 8}|{'-' * 11}|{'-' * 11}|{'-' * 11}|")
    print("\n".join(rows))


if __name__ == "__main__":
    main()
