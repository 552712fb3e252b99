"""CPU seconds by kind of process while a benchmark runs: samples every process's user+system time from
/proc each ``--every`` seconds and adds each one's growth to its kind (Ray's GCS, raylets, Ray's agents, the
job actors' worker processes, the pipelines, the head worker, everything else). Processes that live less
than one interval are missed. Prints a table at SIGTERM/SIGINT, or when ``--seconds`` have passed.

    python bench/cpu_by_process.py --every 1 > cpu.txt &  ...  kill %1
"""

from __future__ import annotations

import argparse
import os
import signal
import time
from collections import Counter

TICK = os.sysconf("SC_CLK_TCK")
KINDS = (  # first match of the command line wins (a Ray worker's names its raylet, and is renamed ray::…)
    ("default_worker.py", "Ray worker processes (the job actors)"),
    ("ray::", "Ray worker processes (the job actors)"),
    ("gcs_server", "Ray GCS"),
    ("dashboard/agent.py", "Ray dashboard agents"),
    ("runtime_env/agent", "Ray runtime-env agents"),
    ("raylet", "Ray raylets"),
    ("fake_pipeline.py", "pipelines (stand-in)"),
    ("runner.worker", "head worker"),
    ("bench_cluster.py", "the benchmark's driver"),
)


def kind(pid: int) -> str:
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as handle:
            cmd = handle.read().replace(b"\0", b" ").decode(errors="replace")
    except OSError:
        return "gone"
    return next((name for key, name in KINDS if key in cmd), "other")


def cpu_ticks(pid: int) -> int:
    with open(f"/proc/{pid}/stat") as handle:
        fields = handle.read().rpartition(")")[2].split()
    return int(fields[11]) + int(fields[12])  # utime, stime


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--every", type=float, default=1.0)
    parser.add_argument("--seconds", type=float, default=3600)
    args = parser.parse_args()
    stop = False

    def on_signal(*_: object) -> None:
        nonlocal stop
        stop = True

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    seen: dict[int, tuple[str, int]] = {}
    used: Counter[str] = Counter()
    me = os.getpid()
    start = time.monotonic()
    first = True  # what processes already running had used before is not counted
    while not stop and time.monotonic() - start < args.seconds:
        for entry in os.listdir("/proc"):
            if not entry.isdigit() or int(entry) == me:
                continue
            pid = int(entry)
            try:
                ticks = cpu_ticks(pid)
            except (OSError, IndexError, ValueError):
                continue
            name, before = seen.get(pid, (None, 0))
            if name is None:
                name = kind(pid)
            if not first:
                used[name] += ticks - before
            seen[pid] = (name, ticks)
        first = False
        time.sleep(args.every)
    wall = time.monotonic() - start
    total = sum(used.values()) / TICK
    print(
        f"CPU seconds by kind over {wall:.0f} s on {os.cpu_count()} CPUs ({total / wall:.1f} CPUs busy on average):"
    )
    for name, ticks in used.most_common():
        print(f"  {ticks / TICK:9.1f} s  {ticks / TICK / max(total, 1e-9):6.1%}  {name}")


if __name__ == "__main__":
    main()
