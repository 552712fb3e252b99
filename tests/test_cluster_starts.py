"""Starts that do not wait, jobs that wait for GPUs, and which GPUs a node gives (issue 27).

These tests run a head worker's steps in the test process, which joins the cluster as a Ray driver: the
cluster is on loopback (``LOOPBACK_CLUSTER``), where the test process reaches its head. test_cluster.py
runs the same fixtures' cluster in network namespaces."""

from __future__ import annotations

import importlib.util
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import test_cluster
from conftest import JobFactory
from raycluster import RayCluster

from runner import commands
from runner.backends.base import ANY_GPU
from runner.backends.errors import BackendError
from runner.cli.queue_view import jobs_table
from runner.cluster.node import node_gpus
from runner.core.jobstate import JobState
from runner.core.present import WAITING_FOR_GPU
from runner.store import Store
from runner.worker import steps
from runner.worker.clock import SystemClock
from runner.worker.loop import Flags, tick
from runner.worker.steps import WorkerConfig, WorkerRuntime

pytestmark = [
    pytest.mark.cluster,
    pytest.mark.skipif(importlib.util.find_spec("ray") is None, reason="needs ray (the cluster extra)"),
]
LOOPBACK_CLUSTER = True
# the cluster tests' fixtures and helper, for this module
cluster, node_dir, runs = test_cluster.cluster, test_cluster.node_dir, test_cluster.runs
node_of = test_cluster.node_of


@pytest.fixture
def driver(cluster: RayCluster, monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """This process joined to the cluster as a Ray driver, to run a head worker's steps in it."""
    import ray
    from ray._private import ray_constants

    # what runner.cluster.connect's switch does before Ray is imported: the driver stays on 127.0.0.1
    monkeypatch.setattr(ray_constants, "ENABLE_RAY_CLUSTER", False)
    ray.init(address=cluster.address, _node_ip_address="127.0.0.1", namespace="tuneq", log_to_driver=False)
    yield
    ray.shutdown()


def head_runtime(place_timeout_s: float = 30.0, *, asks_ray: bool = True) -> WorkerRuntime:
    """A head worker's runtime in this process, as its loop makes it: the cluster backend, one ANY_GPU per
    GPU of the cluster, and (``asks_ray``) Ray asked how many are free before each claim."""
    from runner.cluster.backend import RayBackend

    config = WorkerConfig(heartbeat_s=0.2, sweep_s=0.2, busy_poll_s=0.05, idle_poll_s=0.05, mirror_s=0.05)
    backend = RayBackend(place_timeout_s=place_timeout_s)
    w = WorkerRuntime.create({"local": backend}, config, time.time(), (ANY_GPU, ANY_GPU))
    w.free_gpus = backend.free_gpus if asks_ray else None
    return w


def turns(store: Store, w: WorkerRuntime, count: int) -> None:
    """Run ``count`` turns of the worker's loop in this process."""
    for _ in range(count):
        tick(store, SystemClock(), w, Flags())
        time.sleep(0.05)


def drive(store: Store, w: WorkerRuntime, until: Callable[[], bool], timeout: float, what: str) -> None:
    """Run the worker's turns in this process until ``until()`` holds."""
    deadline = time.monotonic() + timeout
    while not until():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        turns(store, w, 1)


def hold_every_gpu() -> list[Any]:
    """Actors that hold the cluster's two GPUs, as something else than tuneq on the cluster would."""
    import ray

    class Holder:  # defined here: Ray sends it to the nodes by value
        def ready(self) -> bool:
            return True

    holders = [ray.remote(Holder).options(num_gpus=1, num_cpus=0).remote() for _ in range(2)]
    ray.get([h.ready.remote() for h in holders], timeout=60)
    return holders


def test_node_gpus_puts_the_devices_ray_gave_in_place_of_any_gpu() -> None:
    assert node_gpus((ANY_GPU,), [3]) == (3,)
    assert node_gpus((ANY_GPU, ANY_GPU), ["7", "2"]) == (2, 7)  # ids as CUDA_VISIBLE_DEVICES entries
    assert node_gpus((), [0]) == ()  # a CPU job gets no device, whatever Ray has
    assert node_gpus((5,), []) == (5,)  # a device already named stays
    with pytest.raises(BackendError, match="asking for 2"):
        node_gpus((ANY_GPU, ANY_GPU), [0])
    with pytest.raises(BackendError, match="numeric CUDA_VISIBLE_DEVICES"):
        node_gpus((ANY_GPU,), ["GPU-8f3c"])


def test_one_turn_starts_several_jobs_without_waiting_for_them_to_run(
    store: Store, make_job: JobFactory, runs, driver: None
) -> None:
    jobs = commands.submit(
        store, [make_job("a", "steps=2 sleep=1 gpus"), make_job("b", "steps=2 sleep=1 gpus")]
    )
    w = head_runtime()
    started = steps.claim_ready(store, SystemClock(), w)
    assert [j.id for j in started] == [j.id for j in jobs]  # both in one turn
    assert runs() == []  # the turn ended before Ray had a pipeline running
    assert all(store.get(j.id).node is None for j in jobs)  # no node known yet: recorded once it runs
    drive(store, w, lambda: all(store.get(j.id).state.is_finished for j in jobs), 120, "both jobs")
    a, b = (store.get(j.id) for j in jobs)
    assert (a.state, b.state) == (JobState.SUCCEEDED, JobState.SUCCEEDED), (a.reason, b.reason)
    assert node_of(a) != node_of(b)
    for job in (a, b):  # the Launch's ANY_GPU became the node's device Ray gave (each node has one: 0)
        assert (Path(job.run_dir) / "gpus").read_text() == "0"


def test_a_job_no_node_has_a_gpu_for_waits_queued_and_spends_no_retry(
    store: Store, make_job: JobFactory, runs, driver: None
) -> None:
    import ray

    holders = hold_every_gpu()
    (job,) = commands.submit(store, [make_job("waits", "steps=1", retries=1)])
    w = head_runtime()
    try:
        drive(store, w, lambda: (store.get(job.id).reason or "").startswith(WAITING_FOR_GPU), 30, "the note")
        turns(store, w, 40)
        waiting = store.get(job.id)
        assert (waiting.state, waiting.attempts, waiting.retries_left) == (JobState.QUEUED, 0, 1)
        assert "waiting" in jobs_table(store.list_jobs(), time.time())  # `tuneq status` says so
        assert runs() == []
    finally:
        for holder in holders:
            ray.kill(holder)
    drive(store, w, lambda: store.get(job.id).state.is_finished, 60, "the job, once GPUs are free")
    done = store.get(job.id)
    assert (done.state, done.attempts, done.retries_left) == (JobState.SUCCEEDED, 1, 1), done.reason
    assert runs() == [str(job.id)]


def test_a_start_no_node_places_in_time_goes_back_to_the_queue_spending_no_retry(
    store: Store, make_job: JobFactory, runs, driver: None
) -> None:
    """The head's count said a GPU was free, but none was (a node lost, something else took it)."""
    import ray

    holders = hold_every_gpu()
    (job,) = commands.submit(store, [make_job("waits", "steps=1", retries=1)])
    w = head_runtime(place_timeout_s=2, asks_ray=False)  # it trusts its count of the cluster's GPUs
    try:
        drive(store, w, lambda: store.get(job.id).attempts >= 2, 60, "two starts no node placed")
        assert store.get(job.id).retries_left == 1 and runs() == []
        first = store.attempts(job.id)[0]
        assert first.reason is not None and first.reason.startswith(WAITING_FOR_GPU), first.reason
    finally:
        for holder in holders:
            ray.kill(holder)
    drive(store, w, lambda: store.get(job.id).state.is_finished, 60, "the job, once GPUs are free")
    done = store.get(job.id)
    assert (done.state, done.retries_left) == (JobState.SUCCEEDED, 1), done.reason
    assert runs() == [str(job.id)]
