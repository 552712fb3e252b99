"""What following a running job costs the process that polls it (the worker; a cluster node's actor polls
5 times a second), with many other processes on the machine, as on a busy GPU node or the 16 x 8 cluster
simulation (about 700). Each poll checks the pipeline's leader; at most every ``SCAN_EVERY_S`` it also
records the job's descendants, a scan of every process of the machine.

    .venv/bin/python bench/bench_poll.py [--others 600] [--hz 5] [--seconds 10]
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from runner.backends.base import Launch  # noqa: E402
from runner.backends.local import SCAN_EVERY_S, LocalBackend  # noqa: E402
from runner.spec import parse_spec  # noqa: E402

SPEC = parse_spec('name = "poll"\n[model]\nbase = "m"\n[data]\nsource = "d.jsonl"\n', "bench")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--others", type=int, default=600, help="idle processes started beside the job")
    parser.add_argument("--hz", type=float, default=5.0, help="polls a second")
    parser.add_argument("--seconds", type=float, default=10.0)
    args = parser.parse_args()
    others = [subprocess.Popen(["sleep", "600"]) for _ in range(args.others)]
    run_dir = Path(tempfile.mkdtemp(prefix="bench-poll-"))
    backend = LocalBackend([sys.executable, "-c", "import time; time.sleep(600)"])
    handle = backend.start(Launch("1", run_dir, SPEC))
    try:
        polls, start, cpu = 0, time.monotonic(), time.process_time()
        while time.monotonic() - start < args.seconds:
            assert backend.poll(handle) is None
            polls += 1
            time.sleep(1 / args.hz)
        used = time.process_time() - cpu
        print(
            f"{args.others} other processes, {polls} polls at {args.hz:g}/s (descendants recorded at most every "
            f"{SCAN_EVERY_S:g} s): {used / polls * 1000:.2f} ms CPU a poll, "
            f"{used / args.seconds * 1000:.1f} ms CPU a second = {used / args.seconds:.1%} of a core per job"
        )
    finally:
        backend.stop(handle, grace_s=1)
        for proc in others:
            proc.kill()
            proc.wait()


if __name__ == "__main__":
    main()
