"""Joining the Ray cluster as its driver: the head worker connects once, at start.

The worker runs on a machine of the cluster (the head, or one that joined it with ``ray start``: Ray's
driver needs a Ray node beside it). Its node address is the one this machine reaches the head from, which
the kernel's route to the head gives (Ray would otherwise guess an interface address, or the route to
the internet, which a private cluster may not have). On a loopback address (a cluster on one machine, as in the tests)
Ray's own switch ``RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER=0`` keeps the driver on 127.0.0.1 too: without it
Ray rewrites ``127.0.0.1`` to the machine's interface address, where nothing listens.
"""

from __future__ import annotations

import logging
import os
import socket

from runner.backends.base import ANY_GPU
from runner.cluster.address import (
    ClusterError,
    ClusterInfo,
    exposure_warning,
    is_loopback,
    now,
    public_warning,
    split_address,
    write_cluster_info,
)

log = logging.getLogger("tuneq.worker")
LOOPBACK_SWITCH = "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER"


def connect(address: str) -> ClusterInfo:
    """Join the cluster at ``address`` (``HOST:PORT``); warn if its addresses are public; its GPUs."""
    host, port = split_address(address)
    try:  # Ray itself would retry an address where nothing answers for ever
        socket.create_connection((host, port), timeout=10).close()
    except OSError as exc:
        raise ClusterError(
            f"nothing answers at {address} ({exc.strerror or exc}): is `ray start --head` running there?"
        ) from None
    if is_loopback(host):
        os.environ[LOOPBACK_SWITCH] = "0"  # read when Ray is imported, just below
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    try:
        import ray
    except ImportError:
        raise ClusterError(
            "a cluster needs Ray, which is not installed: pip install 'tuneq[cluster]' (on the head and every node)"
        ) from None

    try:
        context = ray.init(
            address=address,
            _node_ip_address=own_address(host, port),
            namespace="tuneq",
            log_to_driver=False,
            logging_level=logging.WARNING,
        )
    except (ConnectionError, RuntimeError, ValueError) as exc:
        raise ClusterError(f"cannot join the Ray cluster at {address}: {exc}") from None
    for what, where in (("the Ray head", address), ("Ray's dashboard", context.dashboard_url or "")):
        if where and (warning := public_warning(what, where)):
            log.warning("%s", warning)
    if warning := exposure_warning():  # `ray start` binds every address, whatever --node-ip-address says
        log.warning("%s", warning)
    return cluster_info(address)


def own_address(host: str, port: int) -> str:
    """This machine's address on the way to ``host`` (the source address the kernel picks for it)."""
    family, _, _, _, where = socket.getaddrinfo(host, port, type=socket.SOCK_DGRAM)[0]
    with socket.socket(family, socket.SOCK_DGRAM) as probe:
        probe.connect(where)  # UDP: nothing is sent
        return str(probe.getsockname()[0])


def cluster_info(address: str) -> ClusterInfo:
    """The GPUs of each live node (a node without GPUs counts 0)."""
    import ray

    gpus = tuple(int(n["Resources"].get("GPU", 0)) for n in ray.nodes() if n["Alive"])
    return ClusterInfo(address, gpus, now())


def cluster_gpus(address: str) -> tuple[int, ...]:
    """:data:`~runner.backends.base.ANY_GPU` once per GPU of the cluster's live nodes (the head cannot
    name a node's devices: Ray picks them); records the nodes for ``submit``'s check."""
    info = cluster_info(address)
    write_cluster_info(info)
    return (ANY_GPU,) * sum(info.node_gpus)
