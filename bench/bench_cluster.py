"""Cluster numbers on one machine (every Ray process on 127.0.0.1, token authentication on), with the
fake pipeline (tests/fake_pipeline.py) on the nodes:

- submit → running: an idle head worker and idle nodes; submit to the job's first event in the head's
  ``events.jsonl`` (and to the claim);
- event → head delay: each event's own time stamp (written on the node) to the moment its line appears in
  the head's ``events.jsonl`` (polled every 5 ms);
- artifact return: a job that leaves a 1 GiB file; its ``job_end`` on the node to the job recorded on the
  head (copy in 8 MiB chunks, sha256 on both sides);
- scale: a head and N nodes declaring G GPUs each, M short jobs of one GPU queued before the head worker
  starts: jobs/minute, GPU occupancy, and how fast the first wave (one job per GPU) is claimed by the head
  and running on the nodes.

    .venv/bin/python bench/bench_cluster.py [--skip-latency] [--scale-nodes 16 --gpus-per-node 8 \
        --scale-jobs 1000 --job-s 2]
"""

from __future__ import annotations

import argparse
import json
import os
import secrets
import shlex
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import datetime
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from runner import commands  # noqa: E402
from runner.core.jobstate import JobState  # noqa: E402
from runner.store import Store  # noqa: E402

FAKE = [sys.executable, str(ROOT / "tests" / "fake_pipeline.py")]


def stamp(t: str) -> float:
    return datetime.fromisoformat(t.replace("Z", "+00:00")).timestamp()


@contextmanager
def ray_cluster(nodes: int, gpus: int, work: Path, object_store_mb: int = 300) -> Iterator[str]:
    """A head and ``nodes`` nodes with ``gpus`` declared GPUs each, on loopback; yields the address."""
    os.environ.update(
        {
            "RAY_USAGE_STATS_ENABLED": "0",
            "RAY_AUTH_MODE": "token",
            "RAY_AUTH_TOKEN": secrets.token_hex(16),
            "TUNEQ_NODE_DIR": str(work / "nodes"),
            "TUNEQ_HOME": str(work / "node-home"),
            "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")])),
        }
    )
    from ray.cluster_utils import Cluster

    start = time.perf_counter()
    cluster = Cluster(
        initialize_head=True,
        head_node_args={
            "node_ip_address": "127.0.0.1",
            "num_cpus": 1,
            "include_dashboard": False,
            "object_store_memory": object_store_mb << 20,
        },
    )
    for _ in range(nodes):
        cluster.add_node(
            node_ip_address="127.0.0.1",
            num_cpus=gpus,
            num_gpus=gpus,
            object_store_memory=object_store_mb << 20,
        )
    cluster.wait_for_nodes()
    print(
        f"cluster: head + {nodes} node(s) x {gpus} GPU(s) up in {time.perf_counter() - start:.1f} s",
        flush=True,
    )
    try:
        yield cluster.address
    finally:
        cluster.shutdown()


@contextmanager
def head(
    address: str, work: Path, name: str, before: Callable[[Store], None] | None = None
) -> Iterator[Store]:
    """A fresh state directory with a cluster worker running on it (``before`` fills its queue first)."""
    home = work / name
    env = {**os.environ, "TUNEQ_HOME": str(home), "TUNEQ_PIPELINE_CMD": shlex.join(FAKE)}
    home.mkdir()
    os.environ["TUNEQ_HOME"] = str(home)
    if before is not None:
        with Store() as store:
            before(store)
    log = (work / f"{name}-worker.log").open("wb")
    proc = subprocess.Popen(
        [sys.executable, "-m", "runner.worker", "--cluster", address],
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    try:
        wait_for(lambda: (home / "cluster.json").exists(), 120)
        with Store() as store:
            yield store
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(60)
        except subprocess.TimeoutExpired:
            proc.kill()


def wait_for(check: Callable[[], bool], timeout: float, poll: float = 0.005) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            raise TimeoutError
        time.sleep(poll)


def job_file(folder: Path, name: str, description: str) -> Path:
    data = folder / "data"
    data.mkdir(parents=True, exist_ok=True)
    shutil.copy(ROOT / "jobs" / "data" / "medical-cot-tiny.jsonl", data)
    path = folder / f"{name}.toml"
    path.write_text(
        f'name = "{name}"\ndescription = "{description}"\n[model]\nbase = "tuneq:tiny-llama"\n'
        '[data]\nsource = "data/medical-cot-tiny.jsonl"\nformat = "columns"\n'
        '[data.columns]\nprompt = "Question"\nreasoning = "Complex_CoT"\nresponse = "Response"\n'
        '[template]\nstyle = "r1"\n'  # no chat-template check (a child process of ~2 s) at each submit
    )
    return path


def ms(samples: list[float]) -> str:
    xs = sorted(s * 1000 for s in samples)
    return f"median {statistics.median(xs):.0f} ms, p95 {xs[int(0.95 * (len(xs) - 1))]:.0f} ms, max {xs[-1]:.0f} ms (n={len(xs)})"


def latency(address: str, work: Path) -> None:
    with head(address, work, "latency") as store:
        events_path: Callable[[int], Path] = lambda i: Path(store.get(i).run_dir) / "events.jsonl"  # noqa: E731
        # submit → running, five times, one at a time on idle nodes
        to_claim, to_event = [], []
        for n in range(5):
            t0 = time.time()
            (job,) = commands.submit(store, [job_file(work / f"l{n}", f"l{n}", "steps=1")])
            path = events_path(job.id)
            wait_for(lambda p=path: p.exists() and p.stat().st_size > 0, 60)  # type: ignore[misc]
            to_event.append(time.time() - t0)
            wait_for(lambda i=job.id: store.get(i).state.is_finished, 60)  # type: ignore[misc]
            started = store.get(job.id).started_at
            assert started is not None
            to_claim.append(started - t0)
        print(f"submit -> claimed by the head worker: {ms(to_claim)}")
        print(f"submit -> first event of the node's pipeline in the head's events.jsonl: {ms(to_event)}")

        # event → head delay
        (job,) = commands.submit(store, [job_file(work / "ev", "ev", "steps=100 sleep=10")])
        path, seen, arrivals = events_path(job.id), 0, []
        wait_for(lambda: path.exists(), 60)
        deadline = time.time() + 60
        while time.time() < deadline:
            data = path.read_bytes()
            if len(data) > seen:
                now = time.time()
                for line in data[seen:].splitlines():
                    arrivals.append(now - stamp(json.loads(line)["t"]))
                seen = len(data)
                if b'"job_end"' in data:
                    break
            time.sleep(0.005)
        print(f"event on the node -> line in the head's events.jsonl: {ms(arrivals)}")

        # artifact return: 1 GiB
        (job,) = commands.submit(store, [job_file(work / "blob", "blob", "steps=1 blob=1024")])
        wait_for(lambda: store.get(job.id).state.is_finished, 600, 0.05)
        done = store.get(job.id)
        assert done.state is JobState.SUCCEEDED, done.reason
        ended = [json.loads(x) for x in events_path(job.id).read_text().splitlines() if '"job_end"' in x][-1]
        assert done.finished_at is not None
        seconds = done.finished_at - stamp(ended["t"])
        size = (Path(done.run_dir) / "gguf" / "blob.bin").stat().st_size
        print(
            f"artifact return: {size / 2**20:.0f} MiB in {seconds:.1f} s = {size / 2**20 / seconds:.0f} MiB/s"
        )


def scale(address: str, work: Path, jobs: int, job_s: float, gpus_total: int) -> None:
    path = job_file(work / "scale-jobs", "s", f"steps=2 sleep={job_s}")

    def submit_all(store: Store) -> None:  # before the worker starts: the head, not submit, sets the pace
        t0 = time.time()
        for _ in range(jobs):
            commands.submit(store, [path])
        print(f"submitted {jobs} jobs in {time.time() - t0:.1f} s", flush=True)

    with head(address, work, "scale", submit_all) as store:
        t0 = time.time()
        last = 0
        while True:
            finished = [j for j in store.list_jobs() if j.state.is_finished]
            if len(finished) >= jobs:
                break
            if len(finished) // 100 > last:
                last = len(finished) // 100
                print(f"  {len(finished)} done after {time.time() - t0:.0f} s", flush=True)
            time.sleep(1)
        all_jobs = store.list_jobs()
        start = min(j.started_at or t0 for j in all_jobs)
        end = max(j.finished_at or t0 for j in all_jobs)
        ok = sum(j.state is JobState.SUCCEEDED for j in all_jobs)
        held = sum((j.finished_at or 0) - (j.started_at or 0) for j in all_jobs)
        busy = 0.0
        first_events = []
        for j in all_jobs:
            events = [json.loads(x) for x in (Path(j.run_dir) / "events.jsonl").read_text().splitlines()]
            if events:
                busy += stamp(events[-1]["t"]) - stamp(events[0]["t"])
                first_events.append(stamp(events[0]["t"]))
        wall = end - start
        peak = _peak_running(all_jobs)
        attempts = sum(j.attempts for j in all_jobs)
        print(
            f"scale: {jobs} jobs ({ok} succeeded, {attempts} attempts) of ~{job_s:g} s on {gpus_total} GPUs in "
            f"{wall:.0f} s = {jobs / wall * 60:.0f} jobs/min; at most {peak} at once; GPU occupancy "
            f"{held / (gpus_total * wall):.1%} held by jobs, {busy / (gpus_total * wall):.1%} running a pipeline"
        )
        claims = sorted(j.started_at for j in all_jobs if j.started_at)
        wave = min(gpus_total, len(claims), len(first_events))
        ran = sorted(first_events)
        print(
            f"starts: the first {wave} claimed by the head in {claims[wave - 1] - claims[0]:.1f} s "
            f"({_per_min(wave, claims[wave - 1] - claims[0])}/min), their pipelines running on the nodes "
            f"after {ran[wave - 1] - claims[0]:.1f} s ({_per_min(wave, ran[wave - 1] - claims[0])}/min); "
            f"all {len(claims)} claimed over {claims[-1] - claims[0]:.0f} s "
            f"({_per_min(len(claims), claims[-1] - claims[0])}/min)"
        )


def _per_min(count: int, seconds: float) -> str:
    return f"{count / seconds * 60:.0f}" if seconds > 0 else "inf"


def _peak_running(jobs: list[Any]) -> int:
    edges = sorted(
        [(j.started_at, 1) for j in jobs if j.started_at]
        + [(j.finished_at, -1) for j in jobs if j.finished_at]
    )
    peak = now = 0
    for _, step in edges:
        now += step
        peak = max(peak, now)
    return peak


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--skip-latency", action="store_true")
    parser.add_argument("--scale-nodes", type=int, default=16)
    parser.add_argument("--gpus-per-node", type=int, default=8)
    parser.add_argument("--scale-jobs", type=int, default=1000)
    parser.add_argument("--job-s", type=float, default=2.0)
    parser.add_argument("--keep-log", type=Path, help="copy the scale run's head worker log here")
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="bench-cluster-"))
    try:
        if not args.skip_latency:
            with ray_cluster(2, 1, work, object_store_mb=300) as address:
                latency(address, work)
        if args.scale_jobs:
            with ray_cluster(args.scale_nodes, args.gpus_per_node, work, object_store_mb=80) as address:
                scale(address, work, args.scale_jobs, args.job_s, args.scale_nodes * args.gpus_per_node)
    finally:
        if args.keep_log and (work / "scale-worker.log").exists():
            shutil.copy(work / "scale-worker.log", args.keep_log)
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
