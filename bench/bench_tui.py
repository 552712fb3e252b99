"""TUI costs with 1,000 jobs in the store and a running job with 100,000 event lines: time to first paint,
opening that job, CPU while idle and while the job streams events, event → screen latency, memory.
Targets: first paint ≤ 1 s, idle CPU ≤ 2 %, event → screen ≤ 1 s.

``tuneq tui`` runs as a real process in a pseudo-terminal (120x40); paint times are measured from the
spawn (interpreter start included) to the first output that shows the data. A fake worker heartbeats
every 5 s, as a real one does. The 100,000 lines are written in the EventWriter's format in bulk (the
writer fsyncs each line, which would take minutes here).

    .venv/bin/python bench/bench_tui.py [--jobs 1000] [--events 100000]
"""

from __future__ import annotations

import argparse
import fcntl
import json
import os
import pty
import select
import struct
import subprocess
import sys
import tempfile
import termios
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from runner.core import events  # noqa: E402
from runner.store import NewJob, Owner, Progress, Store, WorkerInfo  # noqa: E402

TICK = os.sysconf("SC_CLK_TCK")


def seed(store: Store, n_jobs: int, n_events: int) -> Path:
    """``n_jobs`` finished and queued jobs plus one running job whose events file has ``n_events`` lines."""
    runs = store.path.parent / "runs"
    now = time.time()
    for i in range(n_jobs - 1):
        new = NewJob(f"job-{i:04d}", "", "h", "/jobs/x.toml", i % 3, 1)
        store.submit(new, now=now - 60 * (n_jobs - i), prepare=lambda job_id: runs / str(job_id))
    worker = WorkerInfo("bench-worker", "bench", os.getpid(), now, now)
    store.heartbeat(worker, now=now, lease_s=1e9)
    run = runs / "live"
    new = NewJob("streaming", "", "h", "/jobs/live.toml", 99, 1)
    job = store.submit(new, now=now, prepare=lambda job_id: run)
    store.claim(worker.id, now=now, lease_s=1e9)  # priority 99: the live job
    progress = Progress("train", n_events, 10 * n_events, 1.0, 60.0)
    store.update_progress(job.id, Owner(worker.id, 1), progress, now=now)
    run.mkdir(parents=True, exist_ok=True)
    head = {"stage": "train", "t": events.now_iso(), "job": str(job.id)}
    with (run / "events.jsonl").open("w") as out:  # written at once, not one fsync a line as EventWriter does
        out.write(json.dumps(events.to_record(events.StageStart(**head))) + "\n")
        for step in range(1, n_events):
            loss = 2.0 / (1 + step / 1000)
            line = events.Progress(**head, step=step, max_steps=10 * n_events, loss=loss, lr=1e-4, eta_s=60.0)
            out.write(json.dumps(events.to_record(line)) + "\n")
    with (run / "log.txt").open("w") as log:
        log.writelines(f"log line {i}\n" for i in range(20_000))
    return run


class Terminal:
    """``tuneq tui`` in a pseudo-terminal; collects everything it writes."""

    def __init__(self, env: dict[str, str]) -> None:
        self.master, slave = pty.openpty()
        fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 40, 120, 0, 0))
        self.started = time.perf_counter()
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "runner", "tui", "--jobs", str(ROOT / "jobs")],
            stdin=slave,
            stdout=slave,
            stderr=slave,
            env=env,
            cwd=ROOT,
            start_new_session=True,
        )
        os.close(slave)
        self.output = b""

    def wait_for(self, marker: bytes, timeout: float = 30.0) -> float:
        """Seconds until ``marker`` appears in new output (read from now on)."""
        start, self.output = time.perf_counter(), b""
        while marker not in self.output:
            if time.perf_counter() - start > timeout:
                raise TimeoutError(f"{marker!r} never appeared")
            ready, _, _ = select.select([self.master], [], [], 0.05)
            if ready:
                self.output += os.read(self.master, 1 << 16)
        return time.perf_counter() - start

    def drain(self, seconds: float) -> None:
        """Keep reading (a terminal must) for ``seconds``."""
        end = time.perf_counter() + seconds
        while time.perf_counter() < end:
            if select.select([self.master], [], [], 0.05)[0]:
                os.read(self.master, 1 << 16)

    def cpu_seconds(self) -> float:
        fields = Path(f"/proc/{self.proc.pid}/stat").read_text().rpartition(")")[2].split()
        return (int(fields[11]) + int(fields[12])) / TICK

    def rss_mib(self) -> float:
        for line in Path(f"/proc/{self.proc.pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
        return float("nan")

    def cpu_percent(self, seconds: float) -> float:
        before = self.cpu_seconds()
        self.drain(seconds)
        return 100 * (self.cpu_seconds() - before) / seconds

    def close(self) -> None:
        os.write(self.master, b"q")
        try:
            self.proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            self.proc.kill()
        os.close(self.master)


def heartbeats(path: Path, stop: threading.Event) -> None:
    with Store(path) as store:
        info = WorkerInfo("bench-worker", "bench", os.getpid(), time.time(), time.time())
        while not stop.wait(5.0):
            store.heartbeat(info, now=time.time(), lease_s=1e9)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--jobs", type=int, default=1000)
    parser.add_argument("--events", type=int, default=100_000)
    parser.add_argument("--seconds", type=float, default=10.0, help="length of each CPU measurement")
    args = parser.parse_args()
    home = Path(tempfile.mkdtemp(prefix="tuneq-bench-tui-"))
    with Store(home / "queue.db") as store:
        run = seed(store, args.jobs, args.events)
        job_id = max(j.id for j in store.list_jobs())
    stop = threading.Event()
    threading.Thread(target=heartbeats, args=(home / "queue.db", stop), daemon=True).start()
    env = {**os.environ, "TUNEQ_HOME": str(home), "TERM": "xterm-256color", "PYTHONPATH": str(ROOT)}
    term = Terminal(env)
    rows: list[tuple[str, str, str]] = []
    try:
        term.wait_for(f"{args.jobs} jobs".encode())
        paint = time.perf_counter() - term.started
        rows.append((f"first paint, queue of {args.jobs} jobs (from spawn)", f"{paint:.2f} s", "≤ 1 s"))
        term.drain(2.0)
        rows.append(("idle CPU, queue screen", f"{term.cpu_percent(args.seconds):.1f} %", "≤ 2 %"))
        os.write(term.master, b"\r")  # the live job sorts first
        opened = term.wait_for(b"streaming")
        painted = term.wait_for(f"{args.events - 1}/".encode())
        label = f"open the job with {args.events:,} events (to its numbers)"
        rows.append((label, f"{opened + painted:.2f} s", ""))
        term.drain(2.0)
        rows.append(("idle CPU, job screen", f"{term.cpu_percent(args.seconds):.1f} %", "≤ 2 %"))
        rows.append(("memory (RSS) with the job open", f"{term.rss_mib():.0f} MiB", ""))
        writer = events.EventWriter(run / "events.jsonl", str(job_id))
        latencies: list[float] = []
        before = term.cpu_seconds()
        started = time.perf_counter()
        step = args.events
        while time.perf_counter() - started < args.seconds:
            step += 1
            writer.emit(
                events.Progress(stage="train", step=step, max_steps=10 * args.events, loss=0.5, eta_s=30.0)
            )
            latencies.append(term.wait_for(f"{step}/".encode(), timeout=5))
            term.drain(0.2)
        streaming = 100 * (term.cpu_seconds() - before) / (time.perf_counter() - started)
        rows.append(
            (
                f"CPU while the job streams ({len(latencies) / args.seconds:.1f} events/s)",
                f"{streaming:.1f} %",
                "",
            )
        )
        latencies.sort()
        rows.append(
            (
                "event → screen, median / max",
                f"{latencies[len(latencies) // 2]:.2f} / {latencies[-1]:.2f} s",
                "≤ 1 s",
            )
        )
    finally:
        stop.set()
        term.close()
    width = max(len(r[0]) for r in rows)
    print(f"| {'measure':<{width}} | {'result':>14} | {'target':>6} |")
    print(f"|{'-' * (width + 2)}|{'-' * 16}|{'-' * 8}|")
    for label, value, target in rows:
        print(f"| {label:<{width}} | {value:>14} | {target:>6} |")


if __name__ == "__main__":
    main()
