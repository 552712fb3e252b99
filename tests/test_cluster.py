"""The cluster backend against a real Ray cluster on this machine: a head and two worker nodes on
127.0.0.1 (``ray.cluster_utils.Cluster``), each declaring one GPU, with Ray's token authentication on.
The head's worker is a real ``python -m runner.worker --cluster`` process; jobs run the fake pipeline
(``tests/fake_pipeline.py``) or the real demo job on the nodes."""

from __future__ import annotations

import importlib.util
import json
import os
import secrets
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest
from conftest import ROOT, JobFactory, gone

from runner import commands
from runner.cluster.address import ray_listeners, read_cluster_info
from runner.core.events import JobEnd, Metric, Progress, read_events
from runner.core.jobstate import JobState
from runner.store import Job, Store

if TYPE_CHECKING:
    from ray.cluster_utils import Cluster

pytestmark = [
    pytest.mark.cluster,
    pytest.mark.skipif(importlib.util.find_spec("ray") is None, reason="needs ray (the cluster extra)"),
]
NODE_ARGS: dict[str, Any] = {
    "node_ip_address": "127.0.0.1",
    "num_cpus": 2,
    "num_gpus": 1,
    "object_store_memory": 80 << 20,
}


@pytest.fixture(scope="module")
def node_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Where the nodes keep their run directories (``TUNEQ_NODE_DIR``) and log the fake pipeline's starts."""
    return tmp_path_factory.mktemp("nodes")


@pytest.fixture(scope="module")
def cluster(node_dir: Path) -> Iterator[Cluster]:
    """A head (no GPU) and two nodes with one GPU each, all on loopback, token authentication on."""
    env = {
        "RAY_USAGE_STATS_ENABLED": "0",
        "RAY_AUTH_MODE": "token",
        "RAY_AUTH_TOKEN": secrets.token_hex(16),
        "TUNEQ_NODE_DIR": str(node_dir),
        "TUNEQ_HOME": str(node_dir / "home"),  # the nodes' own state (built-in models)
        "FAKE_RUNS_LOG": str(node_dir / "runs.log"),  # the nodes' pipelines inherit this environment
        "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")])),
    }
    saved = {k: os.environ.get(k) for k in env}
    os.environ.update(env)
    from ray.cluster_utils import Cluster  # after the environment is set: Ray reads its auth mode at import

    head = Cluster(
        initialize_head=True,
        head_node_args={
            "node_ip_address": "127.0.0.1",
            "num_cpus": 1,
            "include_dashboard": False,
            "object_store_memory": 80 << 20,
            "_system_config": {"health_check_period_ms": 500, "health_check_failure_threshold": 4},
        },
    )
    for _ in range(2):
        head.add_node(**NODE_ARGS)
    head.wait_for_nodes()
    yield head
    head.shutdown()
    for key, value in saved.items():
        if value is None:
            os.environ.pop(key, None)
        else:
            os.environ[key] = value


@pytest.fixture
def runs(cluster: Cluster, node_dir: Path) -> Callable[[], list[str]]:
    """Job ids in the order the nodes' fake pipelines started them (this test's only)."""
    path = node_dir / "runs.log"
    path.write_text("")
    return lambda: [line.split()[0] for line in path.read_text().splitlines()]


@pytest.fixture
def head_worker(
    cluster: Cluster, home: Path, tmp_path: Path
) -> Iterator[Callable[[], subprocess.Popen[bytes]]]:
    """Start ``python -m runner.worker --cluster`` processes for this test's state directory."""
    procs: list[subprocess.Popen[bytes]] = []

    def start(config_file: bool = False) -> subprocess.Popen[bytes]:
        """A worker given the cluster by ``--cluster``, or by ``cluster.toml`` in the state directory."""
        log = (tmp_path / f"worker{len(procs)}.log").open("wb")
        cmd = [sys.executable, "-m", "runner.worker", "--cluster", cluster.address]
        if config_file:
            (home / "cluster.toml").write_text(f'address = "{cluster.address}"\n')
            cmd = cmd[:3]
        proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT)
        procs.append(proc)
        return proc

    yield start
    for proc in procs:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(30)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


def wait_for(check: Callable[[], bool], timeout: float = 60.0, what: str = "") -> None:
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.1)


def done(store: Store, *ids: int) -> Callable[[], bool]:
    return lambda: all(store.get(i).state.is_finished for i in ids)


def node_of(job: Job) -> str:
    assert job.handle and "@" in job.handle, job.handle
    return job.handle.partition("@")[2]


def test_two_jobs_run_at_once_on_the_two_nodes(
    store: Store, make_job: JobFactory, head_worker, runs, tmp_path: Path
) -> None:
    jobs = commands.submit(store, [make_job("a", "steps=4 sleep=3"), make_job("b", "steps=4 sleep=3")])
    head_worker()
    wait_for(done(store, *(j.id for j in jobs)), 120, "both jobs")
    a, b = (store.get(j.id) for j in jobs)
    assert (a.state, b.state) == (JobState.SUCCEEDED, JobState.SUCCEEDED), (a.reason, b.reason)
    assert node_of(a) != node_of(b)
    assert a.to_json()["node"] == node_of(a)  # `status --json` and `show` name the node
    assert a.started_at and b.started_at and a.finished_at and b.finished_at
    assert a.started_at < b.finished_at and b.started_at < a.finished_at  # at the same time
    for job in (a, b):
        run = Path(job.run_dir)
        events = read_events(run / "events.jsonl")
        assert [e.step for e in events if isinstance(e, Progress)] == [1, 2, 3, 4]
        assert isinstance(events[-1], JobEnd) and events[-1].ok
        assert (run / "attempts").read_text() == "1"  # a file the pipeline wrote on the node came back
    assert sorted(runs()) == sorted(str(j.id) for j in jobs)


def test_the_test_cluster_listens_on_loopback_only(cluster: Cluster) -> None:
    """Test traffic stays on 127.0.0.1: no Ray server of this machine faces another address."""
    servers = [(name, ip) for name, ip, _ in ray_listeners() if name in ("gcs_server", "raylet")]
    assert len(servers) >= 6  # head and two nodes: the GCS, three raylets with two ports each
    assert {ip.removeprefix("::ffff:") for _, ip in servers} == {"127.0.0.1"}


def job_ends(job: Job) -> list[JobEnd]:
    return [e for e in read_events(Path(job.run_dir) / "events.jsonl") if isinstance(e, JobEnd)]


def resumed_from(job: Job) -> list[object]:
    """The fake pipeline's ``resumed_from_step`` metrics (one for each attempt that ended)."""
    events = read_events(Path(job.run_dir) / "events.jsonl")
    return [e.values.get("resumed_from_step") for e in events if isinstance(e, Metric)]


def test_a_lost_node_requeues_the_job_which_resumes_on_the_other_node(
    cluster: Cluster, store: Store, make_job: JobFactory, head_worker, runs, node_dir: Path, home: Path
) -> None:
    (job,) = commands.submit(store, [make_job("long", "steps=10 sleep=10 ckpt")])
    head_worker()
    checkpoints = Path(job.run_dir) / "checkpoints"
    wait_for(
        lambda: (checkpoints / "checkpoint-3" / "trainer_state.json").exists(), 60, "a synced checkpoint"
    )
    first = node_of(store.get(job.id))
    victim = next(n for n in cluster.worker_nodes if first.endswith(n.node_id[:8]))
    pid = int((node_dir / "runs.log").read_text().split()[1])
    cluster.remove_node(victim, allow_graceful=False)
    try:
        # Ray ends the actor's worker process and its children with the node: that copy does not run on
        wait_for(lambda: gone(pid), 60, "the lost node's pipeline to be stopped")
        wait_for(done(store, job.id), 120, "the job")
        ended = store.get(job.id)
        assert ended.state is JobState.SUCCEEDED, ended.reason
        assert ended.attempts == 2
        assert node_of(ended) != first
        assert len(job_ends(ended)) == 1  # the lost attempt never ended; the second did, from a checkpoint
        (resumed,) = resumed_from(ended)
        assert isinstance(resumed, int) and resumed >= 3
        assert runs() == [str(job.id)] * 2
        # the worker recounts the cluster's GPUs: submit's check and its job slots follow the nodes
        wait_for(lambda: sum(getattr(read_cluster_info(home), "node_gpus", ())) == 1, 30, "the recount")
    finally:  # the next tests need two nodes; a node's processes inherit this process's environment
        with pytest.MonkeyPatch.context() as env:  # the module's node environment, not this test's
            env.setenv("FAKE_RUNS_LOG", str(node_dir / "runs.log"))
            env.setenv("TUNEQ_HOME", str(node_dir / "home"))
            env.delenv("TUNEQ_PIPELINE_CMD")
            cluster.add_node(**NODE_ARGS)
        cluster.wait_for_nodes()


def test_cancel_stops_the_remote_pipeline(
    store: Store, make_job: JobFactory, head_worker, runs, node_dir
) -> None:
    (job,) = commands.submit(store, [make_job("long", "steps=20 sleep=20")])
    head_worker()
    wait_for(lambda: (store.get(job.id).progress.step or 0) >= 2, 60, "step 2")
    pid = int((node_dir / "runs.log").read_text().split()[1])
    commands.cancel(store, job.id)
    wait_for(done(store, job.id), 60, "the cancel")
    assert store.get(job.id).state is JobState.CANCELLED
    wait_for(lambda: gone(pid), 10, "the remote pipeline to end")
    assert (store.get(job.id).progress.step or 0) < 20


def test_head_worker_killed_and_restarted_reattaches_and_never_runs_a_job_twice(
    store: Store, make_job: JobFactory, head_worker, runs, node_dir
) -> None:
    (job,) = commands.submit(store, [make_job("long", "steps=12 sleep=12 ckpt")])
    first = head_worker()
    wait_for(lambda: (store.get(job.id).progress.step or 0) >= 3, 60, "step 3")
    pid = int((node_dir / "runs.log").read_text().split()[1])
    old_worker = store.get(job.id).worker
    first.send_signal(signal.SIGKILL)
    first.wait()
    head_worker()
    wait_for(lambda: store.get(job.id).worker != old_worker, 60, "the new worker to take the job over")
    assert not gone(pid)  # the same pipeline runs on: re-attached, not restarted
    wait_for(done(store, job.id), 120, "the job")
    ended = store.get(job.id)
    assert ended.state is JobState.SUCCEEDED, ended.reason
    assert ended.attempts == 1 and runs() == [str(job.id)]
    assert len(job_ends(ended)) == 1
    assert resumed_from(ended) == [None]  # it never started over
    steps = [e.step for e in read_events(Path(job.run_dir) / "events.jsonl") if isinstance(e, Progress)]
    assert steps == list(range(1, 13))  # every event copied to the head once, none lost across the restart


def test_submit_refuses_more_gpus_than_a_job_trains_on(
    store: Store, make_job: JobFactory, head_worker, home: Path
) -> None:
    head_worker(config_file=True)
    wait_for(lambda: (home / "cluster.json").exists(), 60, "the worker to join the cluster")
    path = make_job("big")
    path.write_text(path.read_text() + "gpus = 2\n")
    done_ = subprocess.run(
        [sys.executable, "-m", "runner", "submit", str(path)], capture_output=True, text=True, timeout=60
    )
    assert done_.returncode == 2, done_.stderr
    assert "run.gpus" in done_.stderr and "a job trains on one GPU" in done_.stderr
    assert "Traceback" not in done_.stderr
    assert store.list_jobs() == []
    path.write_text(path.read_text().replace("gpus = 2", "gpus = 1"))
    assert commands.submit(store, [path])  # one GPU fits a node


@pytest.mark.slow
def test_two_demo_jobs_run_at_once_on_the_two_nodes_and_ship_from_the_head(
    store: Store, head_worker, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """The real pipeline on both nodes at once: GGUFs, reports and ship/ come back; `tuneq ship` works on
    the head."""
    monkeypatch.delenv("TUNEQ_PIPELINE_CMD")  # the real pipeline on the nodes
    demos = commands.submit(store, [ROOT / "jobs" / "demo-tiny.toml", ROOT / "jobs" / "demo-tiny.toml"])
    head_worker()
    wait_for(done(store, *(d.id for d in demos)), 1200, "the demo jobs")
    a, b = (store.get(d.id) for d in demos)
    assert (a.state, b.state) == (JobState.SUCCEEDED, JobState.SUCCEEDED), (a.reason, b.reason)
    assert node_of(a) != node_of(b)
    assert a.started_at and b.started_at and a.finished_at and b.finished_at
    assert a.started_at < b.finished_at and b.started_at < a.finished_at  # at the same time
    for job in (a, b):
        run = Path(job.run_dir)
        assert (run / "gguf" / "demo-tiny-Q4_K_M.gguf").stat().st_size > 1_000_000
        assert json.loads((run / "report.json").read_text())["ok"] is True
        assert not (run / "merged").exists()  # the 16-bit merged model stays on the node
        (end,) = job_ends(job)
        assert end.ok and end.tested_gguf
    dest = tmp_path / "shipped"
    shipped = subprocess.run(
        [sys.executable, "-m", "runner", "ship", str(b.id), str(dest)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert shipped.returncode == 0, shipped.stderr
    assert (dest / "SHA256SUMS").exists() and (dest / "demo-tiny-Q4_K_M.gguf").exists()


def test_secrets_reach_the_remote_pipeline_and_never_its_copied_log_or_events(
    store: Store, make_job: JobFactory, head_worker, monkeypatch: pytest.MonkeyPatch
) -> None:
    token = "hf_" + secrets.token_hex(16)
    monkeypatch.setenv("HF_TOKEN", token)  # the head worker's environment, not the nodes'
    (job,) = commands.submit(store, [make_job("leaky", "leak")])
    head_worker()
    wait_for(done(store, job.id), 60, "the job")
    ended = store.get(job.id)
    assert ended.state is JobState.SUCCEEDED, ended.reason  # the pipeline read $HF_TOKEN on the node
    run = Path(ended.run_dir)
    log = (run / "log.txt").read_text()
    assert "Authorization: Bearer" in log and token not in log
    assert token not in (run / "events.jsonl").read_text()
