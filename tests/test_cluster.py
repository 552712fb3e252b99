"""The cluster backend against a real Ray cluster: a head and two worker nodes, each declaring one GPU,
with Ray's token authentication on, each in a network namespace of its own on a private switch the test
makes (tests/raycluster.py; on 127.0.0.1 where namespaces cannot be made, said by a warning). The nodes do
not see the head's files. The head's worker is a real ``python -m runner.worker --cluster`` process on the
head; jobs run the fake pipeline (``tests/fake_pipeline.py``) or the real demo job on the nodes."""

from __future__ import annotations

import contextlib
import importlib.util
import json
import os
import secrets
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import docker
import pytest
from conftest import ROOT, SCRIPTS, TEST_IMAGE, VENV, JobFactory, gone, no_engine
from docker.models.containers import Container
from raycluster import RayCluster

from runner import commands
from runner.backends.container import SECRETS_TARGET, queue_id
from runner.cluster.address import ray_listeners, read_cluster_info
from runner.core.events import JobEnd, Metric, Progress, read_events
from runner.core.jobstate import JobState
from runner.store import Job, Store

pytestmark = [
    pytest.mark.cluster,
    pytest.mark.skipif(importlib.util.find_spec("ray") is None, reason="needs ray (the cluster extra)"),
]
CONTAINERS_CONF = "containers.conf"


@pytest.fixture(scope="module")
def node_dir() -> Iterator[Path]:
    """Where the nodes keep their run directories (``TUNEQ_NODE_DIR``) and log the fake pipeline's starts:
    outside the session's temporary directory, which the nodes do not see."""
    folder = Path(tempfile.mkdtemp(prefix="tq-nodes-", dir="/tmp"))
    yield folder
    shutil.rmtree(folder, ignore_errors=True)


@pytest.fixture(scope="module")
def cluster(
    node_dir: Path, tmp_path_factory: pytest.TempPathFactory, request: pytest.FixtureRequest
) -> Iterator[RayCluster]:
    """A head (no GPU) and two nodes with one GPU each, token authentication on; on loopback where the
    test module sets ``LOOPBACK_CLUSTER`` (its tests join the cluster from the test process)."""
    env = {
        "RAY_USAGE_STATS_ENABLED": "0",
        "RAY_AUTH_MODE": "token",
        "RAY_AUTH_TOKEN": secrets.token_hex(16),
        "TUNEQ_NODE_DIR": str(node_dir),  # the nodes' run directories (one per attempt)
        "TUNEQ_HOME": str(node_dir / "home"),  # the nodes' state on loopback; in namespaces: own_state
        "FAKE_RUNS_LOG": str(node_dir / "runs.log"),  # the nodes' pipelines inherit this environment
        "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")])),
    }
    saved = {k: os.environ.get(k) for k in env}
    os.environ.update(env)  # the head worker joins with the token
    (node_dir / CONTAINERS_CONF).write_text(node_containers_conf())
    cluster = RayCluster(
        env,
        hidden=tmp_path_factory.getbasetemp(),
        node_env=lambda name: own_state(node_dir, name),
        node_service=(  # each node's own container engine, in its namespaces
            (lambda name: [str(SCRIPTS / "podman-service.sh"), "start", str(node_dir / name / "podman.sock")])
            if shutil.which("podman")
            else None
        ),
        loopback=getattr(request.module, "LOOPBACK_CLUSTER", False),
    )
    yield cluster
    cluster.shutdown()
    for key, value in saved.items():
        if value is None:
            os.environ.pop(key, None)
        else:
            os.environ[key] = value


def own_state(node_dir: Path, name: str) -> dict[str, str]:
    """A node's own state directory, model cache and container engine (as on a machine of its own)."""
    folder = node_dir / name
    (folder / "hf").mkdir(parents=True, exist_ok=True)
    return {
        "TUNEQ_HOME": str(folder / "home"),
        "HF_HOME": str(folder / "hf"),
        "DOCKER_HOST": f"unix://{folder / 'podman.sock'}",
        "CONTAINERS_CONF": str(node_dir / CONTAINERS_CONF),
    }


def node_containers_conf() -> str:
    """The nodes' podman settings: the tests' own, no network for containers, and this checkout, its venv
    and interpreter mounted read-only into each (the node image runs the fake pipeline from them)."""
    trees = {ROOT, VENV, Path(sys.base_prefix)}
    outer = sorted(p for p in trees if not any(p != q and p.is_relative_to(q) for q in trees))
    volumes = json.dumps([f"{p}:{p}:ro" for p in outer])
    conf = (SCRIPTS / CONTAINERS_CONF).read_text()
    return conf.replace("[containers]\n", f'[containers]\nnetns = "none"\nvolumes = {volumes}\n')


@pytest.fixture
def runs(cluster: RayCluster, node_dir: Path) -> Callable[[], list[str]]:
    """Job ids in the order the nodes' fake pipelines started them (this test's only)."""
    path = node_dir / "runs.log"
    path.write_text("")
    return lambda: [line.split()[0] for line in path.read_text().splitlines()]


@pytest.fixture
def head_worker(
    cluster: RayCluster, home: Path, tmp_path: Path
) -> Iterator[Callable[..., subprocess.Popen[bytes]]]:
    """Start ``python -m runner.worker --cluster`` processes for this test's state directory."""
    procs: list[subprocess.Popen[bytes]] = []

    def start(config_file: bool = False, machine: str = "head") -> subprocess.Popen[bytes]:
        """A worker on ``machine`` given the cluster by ``--cluster``, or by ``cluster.toml`` in the state
        directory."""
        log = (tmp_path / f"worker{len(procs)}.log").open("wb")
        cmd = [sys.executable, "-m", "runner.worker", "--cluster", cluster.address]
        if config_file:
            (home / "cluster.toml").write_text(f'address = "{cluster.address}"\n')
            cmd = cmd[:3]
        proc = subprocess.Popen([*cluster.prefix(machine), *cmd], stdout=log, stderr=subprocess.STDOUT)
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


PROBE = """
import json, os
from runner.cluster.address import local_ips, ray_listeners
servers = sorted({ip.removeprefix("::ffff:") for name, ip, _ in ray_listeners() if name in ("gcs_server", "raylet")})
print(json.dumps({"servers": servers, "ips": local_ips(), "sees_head_files": bool(os.listdir(%r))}))
"""


def test_test_traffic_stays_on_the_tests_own_network(
    cluster: RayCluster, tmp_path_factory: pytest.TempPathFactory
) -> None:
    """In namespaces, each machine has only loopback and its own address on the test's switch, and Ray
    listens on nothing else; a node does not see the head's files. On loopback, no Ray server of this
    machine faces another address than 127.0.0.1."""
    if not cluster.in_namespaces:
        servers = [(name, ip) for name, ip, _ in ray_listeners() if name in ("gcs_server", "raylet")]
        assert len(servers) >= 6  # head and two nodes: the GCS, three raylets with two ports each
        assert {ip.removeprefix("::ffff:") for _, ip in servers} == {"127.0.0.1"}
        return
    assert cluster.net is not None
    for machine in ("head", *cluster.names):
        own = cluster.net.address(machine)
        seen = json.loads(cluster.run_on(machine, PROBE % str(tmp_path_factory.getbasetemp())))
        assert {ip for ip in seen["ips"] if not ip.startswith("fe80:")} == {own, "127.0.0.1", "::1"}
        assert seen["servers"] and set(seen["servers"]) <= {own, "127.0.0.1", "0.0.0.0", "::"}, seen
        assert seen["sees_head_files"] is (machine == "head")


def job_ends(job: Job) -> list[JobEnd]:
    return [e for e in read_events(Path(job.run_dir) / "events.jsonl") if isinstance(e, JobEnd)]


def resumed_from(job: Job) -> list[object]:
    """The fake pipeline's ``resumed_from_step`` metrics (one for each attempt that ended)."""
    events = read_events(Path(job.run_dir) / "events.jsonl")
    return [e.values.get("resumed_from_step") for e in events if isinstance(e, Metric)]


def test_a_lost_node_requeues_the_job_which_resumes_on_the_other_node(
    cluster: RayCluster, store: Store, make_job: JobFactory, head_worker, runs, node_dir: Path, home: Path
) -> None:
    """In namespaces the node's cable is pulled: it runs on, cut off, and stops the job's pipeline itself
    (loopback: the node is removed, and Ray ends its processes)."""
    (job,) = commands.submit(store, [make_job("long", "steps=40 sleep=40 ckpt")])
    head_worker()
    checkpoints = Path(job.run_dir) / "checkpoints"
    wait_for(
        lambda: (checkpoints / "checkpoint-3" / "trainer_state.json").exists(), 60, "a synced checkpoint"
    )
    first = node_of(store.get(job.id))
    victim = cluster.machine_of(first)
    pid = int((node_dir / "runs.log").read_text().split()[1])
    cluster.lose(victim)
    try:
        wait_for(lambda: gone(pid), 60, "the lost copy to be stopped")  # long before its own end
        wait_for(done(store, job.id), 120, "the job")
        ended = store.get(job.id)
        assert ended.state is JobState.SUCCEEDED, ended.reason
        assert ended.attempts == 2
        assert cluster.machine_of(node_of(ended)) != victim
        assert len(job_ends(ended)) == 1  # the lost attempt's end never reached the head; the second did
        (resumed,) = resumed_from(ended)
        assert isinstance(resumed, int) and resumed >= 3
        assert runs() == [str(job.id)] * 2
        # the worker recounts the cluster's GPUs: submit's check and its job slots follow the nodes
        wait_for(lambda: sum(getattr(read_cluster_info(home), "node_gpus", ())) == 1, 30, "the recount")
    finally:  # the next tests need two nodes
        cluster.replace(victim)


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
    cluster: RayCluster, store: Store, make_job: JobFactory, head_worker, runs, node_dir
) -> None:
    # in namespaces, the new worker runs on a second head machine, with another address
    again_on = cluster.add_head2() if cluster.in_namespaces else "head"
    (job,) = commands.submit(store, [make_job("long", "steps=30 sleep=30 ckpt")])
    first = head_worker()
    wait_for(lambda: (store.get(job.id).progress.step or 0) >= 3, 60, "step 3")
    pid = int((node_dir / "runs.log").read_text().split()[1])
    old_worker = store.get(job.id).worker
    first.send_signal(signal.SIGKILL)
    first.wait()
    head_worker(machine=again_on)
    wait_for(lambda: store.get(job.id).worker != old_worker, 60, "the new worker to take the job over")
    assert not gone(pid)  # the same pipeline runs on: re-attached, not restarted
    wait_for(done(store, job.id), 120, "the job")
    ended = store.get(job.id)
    assert ended.state is JobState.SUCCEEDED, ended.reason
    assert ended.attempts == 1 and runs() == [str(job.id)]
    assert len(job_ends(ended)) == 1
    assert resumed_from(ended) == [None]  # it never started over
    steps = [e.step for e in read_events(Path(job.run_dir) / "events.jsonl") if isinstance(e, Progress)]
    assert steps == list(range(1, 31))  # every event copied to the head once, none lost across the restart


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


# --- a container job on a node (podman on each node) ------------------------------------------------------

NODE_IMAGE = "localhost/tuneq-node-test:latest"
NODE_CONTAINERFILE = f"""FROM {TEST_IMAGE}
ENV PYTHONPATH={ROOT}
ENTRYPOINT ["/bin/sh", "-c", "for last; do :; done; exec {VENV}/bin/python {ROOT}/tests/fake_pipeline.py \\"$last\\"", "sh"]
"""


@pytest.fixture(scope="module")
def node_image(cluster: RayCluster, node_dir: Path, request: pytest.FixtureRequest) -> str:
    """The image a container job names: the tests' image whose entry point runs the fake pipeline on the run
    directory its command ends with (``python -m runner.pipeline RUN_DIR``, as tuneq starts it)."""
    if not cluster.in_namespaces or cluster.node_service is None:
        no_engine("a container job on a node needs the nodes' own podman, in network namespaces")
    request.getfixturevalue("client")  # the tests' image, imported on first use
    built = subprocess.run(
        ["podman", "build", "-q", "-t", NODE_IMAGE, "-f", "-", str(node_dir)],
        input=NODE_CONTAINERFILE,
        capture_output=True,
        text=True,
        env={**os.environ, "CONTAINERS_CONF": str(SCRIPTS / CONTAINERS_CONF)},
        check=False,
    )
    assert built.returncode == 0, built.stderr
    return NODE_IMAGE


def container_job(make_job: JobFactory, image: str, name: str, description: str) -> Path:
    path = make_job(name, description)
    path.write_text(path.read_text() + f'backend = "docker"\nimage = "{image}"\n')
    return path


def containers_of(node_dir: Path, machine: str, job: Job) -> list[Container]:
    """The job's containers on ``machine``, asked of that node's own engine."""

    engine = docker.DockerClient(base_url=own_state(node_dir, machine)["DOCKER_HOST"])
    queue = queue_id(Path(own_state(node_dir, machine)["TUNEQ_HOME"]))
    labels = [f"tuneq.job={job.id}", f"tuneq.queue={queue}"]
    return list(engine.containers.list(all=True, filters={"label": labels}))


@pytest.mark.container
def test_a_container_job_runs_in_the_image_on_its_node_with_secrets_as_files_and_is_cancelled(
    cluster: RayCluster,
    store: Store,
    make_job: JobFactory,
    head_worker,
    node_image: str,
    node_dir: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    token = "hf_" + secrets.token_hex(16)
    monkeypatch.setenv("HF_TOKEN", token)  # the head worker's environment, not the nodes'
    (job,) = commands.submit(store, [container_job(make_job, node_image, "boxed", "steps=40 sleep=40 leak")])
    head_worker()
    wait_for(lambda: (store.get(job.id).progress.step or 0) >= 2, 120, "step 2 in the container")
    machine = cluster.machine_of(node_of(store.get(job.id)))
    (box,) = containers_of(node_dir, machine, job)
    attrs = box.attrs
    assert attrs["Config"]["Image"] == node_image and box.status == "running"
    mounts = {m["Destination"]: m for m in attrs["Mounts"]}
    run_dir = next(m for m in mounts.values() if m["Destination"].startswith(str(node_dir)))
    assert run_dir["RW"] and run_dir["Source"] == run_dir["Destination"]  # the node's copy, at its path
    assert not Path(run_dir["Destination"]).is_relative_to(Path(job.run_dir).parent)  # not the head's
    assert not mounts[SECRETS_TARGET]["RW"]
    assert f"HF_TOKEN_FILE={SECRETS_TARGET}/HF_TOKEN" in attrs["Config"]["Env"]
    assert token not in json.dumps(attrs)  # `docker inspect` on the node shows no token

    commands.cancel(store, job.id)
    wait_for(done(store, job.id), 60, "the cancel")
    assert store.get(job.id).state is JobState.CANCELLED
    wait_for(lambda: not containers_of(node_dir, machine, job), 30, "the container to be removed")
    assert (store.get(job.id).progress.step or 0) < 40
    log = (Path(job.run_dir) / "log.txt").read_text()
    assert "Authorization: Bearer" in log and token not in log  # read from the file, redacted on the node


@pytest.mark.container
def test_a_container_job_whose_node_is_lost_is_requeued_and_resumes_in_a_container_on_the_other(
    cluster: RayCluster,
    store: Store,
    make_job: JobFactory,
    head_worker,
    node_image: str,
    node_dir: Path,
) -> None:
    (job,) = commands.submit(store, [container_job(make_job, node_image, "long", "steps=40 sleep=40 ckpt")])
    head_worker()
    checkpoints = Path(job.run_dir) / "checkpoints"
    wait_for(
        lambda: (checkpoints / "checkpoint-3" / "trainer_state.json").exists(), 120, "a synced checkpoint"
    )
    victim = cluster.machine_of(node_of(store.get(job.id)))
    (lost,) = containers_of(node_dir, victim, job)
    cluster.lose(victim)
    try:
        other = next(name for name in cluster.names if name != victim)
        wait_for(lambda: bool(containers_of(node_dir, other, job)), 120, "a container on the other node")
        # the cut-off node stops and removes its container (ended by itself, it would stay, exited)
        wait_for(lambda: not containers_of(node_dir, victim, job), 60, "the lost container to be stopped")
        wait_for(done(store, job.id), 120, "the job")
        ended = store.get(job.id)
        assert ended.state is JobState.SUCCEEDED, ended.reason
        assert ended.attempts == 2 and cluster.machine_of(node_of(ended)) == other
        assert len(job_ends(ended)) == 1  # the lost attempt's end never reached the head; the second did
        (resumed,) = resumed_from(ended)
        assert isinstance(resumed, int) and resumed >= 3
        wait_for(lambda: not containers_of(node_dir, other, job), 30, "the finished container removed")
    finally:  # the cut-off node's container is out of the head's reach: its engine still answers here
        with contextlib.suppress(docker.errors.NotFound):
            lost.remove(force=True)
        cluster.replace(victim)
