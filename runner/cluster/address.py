"""The cluster's address as the user gives it (``HOST:PORT``), and the warning when it faces the internet.

Nothing here imports Ray: the CLI checks addresses and reads what the worker learned of the cluster
(``cluster.json`` in the state directory) without loading it.
"""

from __future__ import annotations

import ipaddress
import json
import socket
import time
import tomllib
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

import psutil

from runner.core.atomic import write_atomic
from runner.core.paths import state_dir

CLUSTER_FILE = "cluster.json"  # written by the worker: what it saw of the cluster
CONFIG_FILE = "cluster.toml"  # written by the user: ``address = "HOST:PORT"``


class ClusterError(Exception):
    """The cluster cannot be used: a bad address or config file, or no cluster there (one line)."""


class ClusterAddressError(ClusterError, ValueError):
    """An address that is not ``HOST:PORT``, or a ``cluster.toml`` that does not give one."""


@dataclass(frozen=True)
class ClusterInfo:
    """What the worker last saw of its cluster: its address and each live node's GPUs."""

    address: str
    node_gpus: tuple[int, ...]
    seen_at: float

    @property
    def max_node_gpus(self) -> int:
        """The most GPUs one node has: a job asking for more can never be placed."""
        return max(self.node_gpus, default=0)


def split_address(address: str) -> tuple[str, int]:
    """``(host, port)`` of ``HOST:PORT`` (``[v6]:PORT`` for IPv6)."""
    host, sep, port = address.strip().rpartition(":")
    host = host.strip("[]")
    if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise ClusterAddressError(f"cluster address {address!r}: expected HOST:PORT, e.g. 10.0.0.1:6379")
    return host, int(port)


def configured_address(state: Path | None = None) -> str | None:
    """The address in ``cluster.toml`` of the state directory, if the file exists."""
    path = (state or state_dir()) / CONFIG_FILE
    if not path.exists():
        return None
    try:
        address = tomllib.loads(path.read_text(encoding="utf-8")).get("address")
    except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError) as exc:
        raise ClusterAddressError(f"{path}: {exc}") from None
    if not isinstance(address, str):
        raise ClusterAddressError(f'{path}: address: missing; write address = "HOST:PORT" (the Ray head)')
    split_address(address)
    return address


def resolve_ip(host: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    """The IP address ``host`` names (``None`` if it does not resolve)."""
    try:
        return ipaddress.ip_address(host)
    except ValueError:
        pass
    try:
        return ipaddress.ip_address(socket.getaddrinfo(host, None)[0][4][0])
    except (OSError, ValueError, IndexError):
        return None


def public_warning(what: str, address: str) -> str | None:
    """A warning if ``address`` (``HOST:PORT`` or a URL's host part) is reachable from the internet."""
    host = address.split("://")[-1].split("/")[0]
    ip = resolve_ip(split_address(host)[0] if ":" in host else host)
    if ip is None or not ip.is_global:
        return None
    return (
        f"{what} {address} is a public address: Ray's ports run code for whoever reaches them. Bind Ray to "
        "a private network or a WireGuard/SSH tunnel (docs/cluster.md, 'Security'), and set RAY_AUTH_MODE=token"
    )


RAY_SERVERS = ("gcs_server", "raylet")  # the processes whose ports accept Ray's RPCs, besides its agents
RAY_AGENTS = "ray::"  # Ray's agents and workers (ray::RuntimeEnvAgent listens on the node's address)
WILDCARDS = ("0.0.0.0", "::")
Listener = tuple[str, str, int]  # process name, IP, port


def _ip(text: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address:
    ip = ipaddress.ip_address(text.split("%")[0])
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        return ip.ipv4_mapped
    return ip


def exposed(listening: Iterable[Listener], local_ips: Iterable[str]) -> list[str]:
    """Which Ray servers of ``listening`` (the GCS, raylets, Ray's agents) face a public address of this
    machine: one bound to a global IP, or to every address (``0.0.0.0``, ``::``, as ``ray start`` binds
    the GCS and raylets whatever ``--node-ip-address`` says) while the machine has one."""
    public = sorted({ip for ip in local_ips if _ip(ip).is_global})
    found = []
    for name, ip, port in listening:
        if name not in RAY_SERVERS and not name.startswith(RAY_AGENTS):
            continue
        if _ip(ip).is_global:
            found.append(f"{name} on {ip}:{port}")
        elif ip in WILDCARDS and public:
            found.append(f"{name} on port {port} of every address, {', '.join(public)} among them")
    return found


def ray_listeners() -> list[Listener]:
    """The TCP ports Ray's servers on this machine listen on."""
    found = []
    for conn in psutil.net_connections("tcp"):
        if conn.status != psutil.CONN_LISTEN or not conn.pid:
            continue
        try:
            name = psutil.Process(conn.pid).name()
        except psutil.Error:
            continue
        found.append((name, conn.laddr.ip, conn.laddr.port))
    return found


def local_ips() -> list[str]:
    """This machine's IP addresses."""
    return [a.address for addrs in psutil.net_if_addrs().values() for a in addrs if a.family in _INET]


_INET = (socket.AF_INET, socket.AF_INET6)


def exposure_warning() -> str | None:
    """A warning if Ray's servers on this machine can be reached on a public address."""
    found = exposed(ray_listeners(), local_ips())
    if not found:
        return None
    return (
        f"Ray listens on a public address ({'; '.join(found)}): Ray's ports run code for whoever reaches "
        "them. Drop them in a firewall except on the private network or tunnel (docs/cluster.md, 'Security')"
    )


def is_loopback(host: str) -> bool:
    """Whether ``host`` is this machine's loopback (a test cluster)."""
    ip = resolve_ip(host)
    return ip is not None and ip.is_loopback


def write_cluster_info(info: ClusterInfo, state: Path | None = None) -> None:
    """Record what the worker saw of its cluster, for ``submit``'s GPU check."""
    path = (state or state_dir()) / CLUSTER_FILE
    write_atomic(
        path,
        json.dumps({"address": info.address, "node_gpus": list(info.node_gpus), "seen_at": info.seen_at}),
    )


def read_cluster_info(state: Path | None = None) -> ClusterInfo | None:
    """What a cluster worker of this state directory last saw; ``None`` without one."""
    try:
        data = json.loads(((state or state_dir()) / CLUSTER_FILE).read_text())
        return ClusterInfo(
            str(data["address"]), tuple(int(g) for g in data["node_gpus"]), float(data["seen_at"])
        )
    except (OSError, ValueError, KeyError, TypeError):
        return None


def too_many_gpus(gpus: int, info: ClusterInfo) -> str | None:
    """Why a job asking for ``gpus`` can never run on the cluster, or ``None`` if some node has them."""
    if gpus <= info.max_node_gpus:
        return None
    return (
        f"asks for {gpus} GPUs, but no node of the cluster at {info.address} has more than "
        f"{info.max_node_gpus}"
    )


def forget_cluster_info(state: Path | None = None) -> None:
    """Remove what an earlier cluster worker saw (this state directory's worker runs jobs here now)."""
    ((state or state_dir()) / CLUSTER_FILE).unlink(missing_ok=True)


def now() -> float:
    """The time recorded with cluster facts."""
    return time.time()
