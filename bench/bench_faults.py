"""Faults under load: many short jobs while workers are killed with SIGKILL and restarted; counts what went
wrong. The audit of issue 28 ran 2,000 one-second jobs with 10 kills, then 200 three-second jobs with 10 more.

    .venv/bin/python bench/bench_faults.py [--short 2000 --short-sleep 1] [--long 200 --long-sleep 3]
                                           [--kills 10] [--workers 2] [--slots 2]

Each phase submits its jobs (``[run] retries = 3``) to a fresh state directory, starts ``--workers`` real worker
processes (``python -m runner.worker --extra``, ``--slots`` jobs at once each) and, as the jobs finish, kills a
random worker ``--kills`` times at even intervals (SIGKILL: its pipelines run on until a live worker's sweep
stops them) and starts a new one in its place. A stand-in pipeline records every start and end, and takes a
per-job lock file (not the run directory's own lock, so that the queue alone is measured) to see a second
pipeline of the same job running at once. Counts per phase:

- lost: a job that did not end ``succeeded`` (failed, cancelled, out of retries) or left the queue;
- duplicated: queue rows beyond those submitted, and pipelines that completed a job already completed;
- double-run: a pipeline started while another pipeline of the same job ran;
- refused starts: pipelines that found the run directory locked by an earlier pipeline of the job (the lock
  keeps the second from running; the attempt is retried);
- stuck: a job not ended when no job has ended for ``--stall`` seconds (or at ``--deadline``).
"""

from __future__ import annotations

import argparse
import os
import random
import shlex
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from runner import commands  # noqa: E402
from runner.core.jobstate import JobState  # noqa: E402
from runner.store import Store  # noqa: E402

PIPELINE = """
import fcntl, json, os, sys, time, tomllib
from pathlib import Path
from runner.core.events import EventWriter, JobEnd, Progress, StageEnd, StageStart

run = Path(sys.argv[1])
job = json.loads((run / "job.json").read_text())["job"]
sleep = float(tomllib.loads((run / "job.toml").read_text())["description"])

def note(what):
    with open(os.environ["BENCH_LOG"], "a") as log:
        log.write(f"{what} {job} {os.getpid()} {time.time():.3f}\\n")

from runner.core.rundir import RunDir, RunDirBusy
holding = RunDir(run).locked()  # as the real pipeline does, for its life
try:
    holding.__enter__()
except RunDirBusy:
    note("busy")
    sys.exit(75)
running = os.open(run / ".bench-running", os.O_RDWR | os.O_CREAT)
try:
    fcntl.flock(running, fcntl.LOCK_EX | fcntl.LOCK_NB)
except BlockingIOError:
    note("double")
note("start")
events = EventWriter(run / "events.jsonl", job)
events.emit(StageStart(stage="train"))
time.sleep(sleep)
events.emit(Progress(stage="train", step=1, max_steps=1, loss=1.0))
events.emit(StageEnd(stage="train", ok=True, seconds=sleep))
events.emit(JobEnd(ok=True))
note("done")
"""


@dataclass
class Phase:
    """One load run's settings."""

    name: str
    jobs: int
    sleep: float
    kills: int


@dataclass
class Counts:
    """What a phase measured."""

    jobs: int
    succeeded: int
    lost: int
    duplicated: int
    double_run: int
    refused: int  # starts refused by the run directory's lock (another pipeline of the job still ran)
    stuck: int
    kills: int
    reruns: int  # attempts beyond the first (expected: a killed worker's jobs run again)
    seconds: float


def run_phase(phase: Phase, workers: int, slots: int, stall_s: float, deadline_s: float, seed: int) -> Counts:
    """Submit, run with kills, and count, in a temporary state directory (kept, and named, if anything
    went wrong)."""
    rng = random.Random(seed)
    home = Path(tempfile.mkdtemp(prefix="tuneq-faults-"))
    try:
        counts = _load(phase, home, workers, slots, stall_s, deadline_s, rng)
    except BaseException:
        print(f"kept {home} (its worker logs)", file=sys.stderr)
        raise
    if counts.lost or counts.duplicated or counts.double_run or counts.stuck:
        print(f"kept {home}: worker logs and the pipelines' runs.log", file=sys.stderr)
    else:
        shutil.rmtree(home, ignore_errors=True)
    return counts


def _load(
    phase: Phase, home: Path, workers: int, slots: int, stall_s: float, deadline_s: float, rng: random.Random
) -> Counts:
    """One phase in ``home``: submit, start the workers, kill and replace them as the jobs end, count."""
    os.environ["TUNEQ_HOME"] = str(home / "state")
    os.environ["BENCH_LOG"] = str(home / "runs.log")
    (home / "pipeline.py").write_text(PIPELINE)
    os.environ["TUNEQ_PIPELINE_CMD"] = shlex.join([sys.executable, str(home / "pipeline.py")])
    os.environ["PYTHONPATH"] = str(ROOT)
    path = _job_file(home / "jobs", phase.sleep)
    with Store() as store:
        submitted = {job.id for _ in range(phase.jobs) for job in commands.submit(store, [path])}
        procs = [_worker(home, slots, i) for i in range(workers)]
        started = time.monotonic()
        kills, last_done, last_change = 0, -1, time.monotonic()
        try:
            while True:
                jobs = store.list_jobs()
                done = sum(j.state.is_finished for j in jobs)
                if done != last_done:
                    last_done, last_change = done, time.monotonic()
                if done == len(jobs) or time.monotonic() - last_change > stall_s:
                    break
                if time.monotonic() - started > deadline_s:
                    break
                if kills < phase.kills and done >= (kills + 1) * phase.jobs / (phase.kills + 1):
                    victim = rng.randrange(len(procs))
                    procs[victim].send_signal(signal.SIGKILL)
                    procs[victim].wait()
                    procs[victim] = _worker(home, slots, len(procs) + kills)
                    kills += 1
                time.sleep(0.2)
        finally:
            for proc in procs:
                proc.send_signal(signal.SIGTERM)
            for proc in procs:
                try:
                    proc.wait(timeout=60)
                except subprocess.TimeoutExpired:
                    proc.kill()
        seconds = time.monotonic() - started
        jobs = store.list_jobs()
    notes = [line.split() for line in Path(os.environ["BENCH_LOG"]).read_text().splitlines()]
    completions = Counter(job for what, job, *_ in notes if what == "done")
    queue = {j.id: j for j in jobs}
    missing = submitted - set(queue)
    unsuccessful = [j for j in jobs if j.state.is_finished and j.state is not JobState.SUCCEEDED]
    return Counts(
        jobs=phase.jobs,
        succeeded=sum(j.state is JobState.SUCCEEDED for j in jobs),
        lost=len(missing) + len(unsuccessful),
        duplicated=len(set(queue) - submitted) + sum(n - 1 for n in completions.values() if n > 1),
        double_run=sum(1 for what, *_ in notes if what == "double"),
        refused=sum(1 for what, *_ in notes if what == "busy"),
        stuck=sum(1 for j in jobs if not j.state.is_finished),
        kills=kills,
        reruns=sum(max(j.attempts - 1, 0) for j in jobs),
        seconds=seconds,
    )


def _job_file(directory: Path, sleep: float) -> Path:
    (directory / "data").mkdir(parents=True)
    shutil.copy(ROOT / "jobs" / "data" / "medical-cot-tiny.jsonl", directory / "data")
    path = directory / "load.toml"
    path.write_text(
        f'name = "load"\ndescription = "{sleep}"\n[model]\nbase = "tuneq:tiny-llama"\n'
        '[data]\nsource = "data/medical-cot-tiny.jsonl"\nformat = "columns"\n'
        '[data.columns]\nprompt = "Question"\nreasoning = "Complex_CoT"\nresponse = "Response"\n'
        "[run]\nretries = 3\n"
    )
    return path


def _worker(home: Path, slots: int, n: int) -> subprocess.Popen[bytes]:
    code = (
        "import sys; from runner.worker.loop import serve; from runner.worker.steps import WorkerConfig; "
        f"sys.exit(serve(extra=True, config=WorkerConfig(cpu_jobs={slots})))"
    )
    log = (home / f"worker{n}.log").open("wb")
    return subprocess.Popen([sys.executable, "-c", code], stdout=log, stderr=subprocess.STDOUT)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--short", type=int, default=2000, help="jobs in the first phase")
    parser.add_argument("--short-sleep", type=float, default=1.0, help="seconds each first-phase job runs")
    parser.add_argument("--long", type=int, default=200, help="jobs in the second phase")
    parser.add_argument("--long-sleep", type=float, default=3.0, help="seconds each second-phase job runs")
    parser.add_argument("--kills", type=int, default=10, help="worker kills per phase")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--slots", type=int, default=2, help="jobs at once per worker")
    parser.add_argument(
        "--stall", type=float, default=180.0, help="no job ended this long: stop, count stuck"
    )
    parser.add_argument("--deadline", type=float, default=7200.0)
    parser.add_argument("--seed", type=int, default=28)
    args = parser.parse_args()
    phases = [
        Phase("short", args.short, args.short_sleep, args.kills),
        Phase("long", args.long, args.long_sleep, args.kills),
    ]
    print(
        f"{args.workers} workers x {args.slots} jobs at once, SIGKILL + restart {args.kills} times per phase"
    )
    print(
        "| phase | jobs | s/job | kills | succeeded | lost | duplicated | double-run | refused starts | stuck "
        "| re-runs | wall s |"
    )
    print("|---|---|---|---|---|---|---|---|---|---|---|---|")
    for phase in phases:
        if phase.jobs == 0:
            continue
        c = run_phase(phase, args.workers, args.slots, args.stall, args.deadline, args.seed)
        print(
            f"| {phase.name} | {c.jobs} | {phase.sleep:g} | {c.kills} | {c.succeeded} | {c.lost} | "
            f"{c.duplicated} | {c.double_run} | {c.refused} | {c.stuck} | {c.reruns} | {c.seconds:.0f} |",
            flush=True,
        )


if __name__ == "__main__":
    main()
