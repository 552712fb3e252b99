"""The cluster tests' Ray cluster: a head without GPUs and nodes with one declared GPU each, Ray's token
authentication on.

Where this process may make network namespaces (tests/netns.py), each machine is a namespace of its own on
a private switch the test makes: the head ``head`` at 10.77.0.1, node ``nodeN`` at 10.77.0.1N, and, once
asked for, ``head2`` at 10.77.0.2 (a second head machine: a Ray node without GPUs where a restarted head
worker can run). Each runs ``ray start --block`` in a mount namespace of its own where the other machines'
Ray files (sockets, session directories) are hidden under a tmpfs, and on a node also ``hidden`` (the test
session's temporary directory, where the head keeps its state and run directories): the head's paths do
not exist there, as on another machine. A node may start a service first (its container engine). A node is
lost by pulling its cable (its switch port down) and comes back as a fresh Ray node in the same namespace.

Elsewhere everything runs on 127.0.0.1 in this machine's namespace (``ray.cluster_utils.Cluster``), a node
is lost by removing it, and :data:`FALLBACK` says so as a warning in the test report.
"""

from __future__ import annotations

import json
import os
import shlex
import shutil
import subprocess
import sys
import tempfile
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

from netns import Network, unavailable

PORT = 6379
OBJECT_STORE = 80 << 20
SYSTEM_CONFIG = {
    "health_check_period_ms": 500,
    "health_check_failure_threshold": 4,
    "health_check_timeout_ms": 1000,
}
FALLBACK = "network namespaces cannot be made here ({why}): the cluster tests ran on loopback only"


class LoopbackOnly(UserWarning):
    """The cluster tests ran without network namespaces."""


class RayCluster:
    """A running test cluster; ``address`` is the Ray head's ``HOST:PORT``."""

    def __init__(
        self,
        env: dict[str, str],
        hidden: Path,
        nodes: int = 2,
        node_env: Callable[[str], dict[str, str]] = lambda name: {},
        node_service: Callable[[str], list[str]] | None = None,
        loopback: bool = False,
    ) -> None:
        """``node_env``: a node's own variables besides ``env``; ``node_service``: a command that starts a
        service on a node before Ray there (its container engine). Both in namespaces only."""
        self.env = {**os.environ, **env}  # every Ray process's environment, whatever a test changes later
        self.node_env = node_env
        self.node_service = node_service
        self.hidden = hidden
        self.temp = Path(tempfile.mkdtemp(prefix="tq-ray-", dir="/tmp"))  # short: Ray's socket paths
        self.procs: dict[str, subprocess.Popen[bytes]] = {}
        self.net: Network | None = None
        self._local: Any = None  # ray.cluster_utils.Cluster in the loopback fallback
        self._names = [f"node{i}" for i in range(1, nodes + 1)]  # in namespaces
        if loopback:  # asked for: a test process that joins the cluster itself must reach its head
            self._start_loopback(nodes)
            return
        if why := unavailable():
            warnings.warn(LoopbackOnly(FALLBACK.format(why=why)), stacklevel=2)
            print(f"\n{FALLBACK.format(why=why)}", file=sys.stderr)
            self._start_loopback(nodes)
            return
        self.net = Network()
        try:
            self.net.add("head", "10.77.0.1/24")
            self._ray(
                "head",
                "--head",
                f"--port={PORT}",
                "--num-gpus=0",
                "--num-cpus=1",
                "--include-dashboard=false",
                f"--system-config={json.dumps(SYSTEM_CONFIG)}",
            )
            for i, name in enumerate(self._names, start=1):
                self.net.add(name, f"10.77.0.1{i}/24")
                self._node(name)
            self.wait_for_nodes()
        except BaseException:
            self.shutdown()
            raise

    # --- what the tests use ------------------------------------------------------------------------

    @property
    def in_namespaces(self) -> bool:
        return self.net is not None

    @property
    def names(self) -> list[str]:
        """The nodes' names (loopback: their Ray node ids' first 8 characters)."""
        if self.net is None:
            return [n.node_id[:8] for n in self._local.worker_nodes]
        return self._names

    @property
    def address(self) -> str:
        if self.net is None:
            return str(self._local.address)
        return f"{self.net.address('head')}:{PORT}"

    def prefix(self, machine: str = "head") -> list[str]:
        """The command prefix that runs a program on ``machine``, in the network and files its Ray processes
        see (nothing on loopback)."""
        return ["nsenter", "-t", str(self.procs[machine].pid), "-m", "-n"] if self.net is not None else []

    def machine_of(self, node: str) -> str:
        """Which node a handle's ``ADDRESS/NODE-ID`` names."""
        ip, _, node_id = node.partition("/")
        if self.net is None:
            return next(n.node_id[:8] for n in self._local.worker_nodes if n.node_id.startswith(node_id))
        return next(name for name in self.names if self.net.members.get(name) == ip)

    def lose(self, machine: str) -> None:
        """Take ``machine`` off the network (loopback: remove its Ray node at once)."""
        if self.net is not None:
            self.net.link(machine, up=False)
            return
        victim = next(n for n in self._local.worker_nodes if n.node_id.startswith(machine))
        self._local.remove_node(victim, allow_graceful=False)

    def replace(self, machine: str) -> None:
        """Bring a lost node back as a fresh Ray node with one GPU, and wait until all nodes are up."""
        if self.net is None:
            saved = dict(os.environ)
            os.environ.clear()
            os.environ.update(self.env)  # the node's processes inherit it, not this test's changes
            try:
                self._local.add_node(**self._node_args())
            finally:
                os.environ.clear()
                os.environ.update(saved)
            self._local.wait_for_nodes()
            return
        self.net.kill(machine)
        self.procs.pop(machine).wait()
        self.net.link(machine, up=True)
        self._node(machine)
        self.wait_for_nodes()

    def add_head2(self) -> str:
        """A second head machine (a Ray node without GPUs) for a head worker to move to; its name."""
        assert self.net is not None
        if "head2" not in self.procs:
            self.net.add("head2", "10.77.0.2/24")
            self._ray("head2", f"--address={self.address}", "--num-gpus=0", "--num-cpus=1")
            self.wait_for_nodes()
        return "head2"

    def run_on(self, machine: str, code: str, timeout: float = 120) -> str:
        """Run Python ``code`` on ``machine`` as its Ray processes see it (its network and files); its
        stdout."""
        done = subprocess.run(
            [*self.prefix(machine), sys.executable, "-c", code],
            capture_output=True,
            text=True,
            timeout=timeout,
            env=self.env,
            check=False,
        )
        assert done.returncode == 0, done.stderr[-2000:]
        return done.stdout

    def wait_for_nodes(self, timeout: float = 300) -> None:
        """Until every started Ray node is alive in the cluster."""
        want = len(self.procs)
        head = self.net.address("head") if self.net else "127.0.0.1"
        self.run_on(
            "head",
            "import ray, time\n"
            f"ray.init(address={self.address!r}, _node_ip_address={head!r}, log_to_driver=False)\n"
            f"deadline = time.monotonic() + {timeout}\n"
            f"while sum(n['Alive'] for n in ray.nodes()) < {want}:\n"
            "    assert time.monotonic() < deadline, ray.nodes()\n"
            "    time.sleep(0.2)\n",
            timeout=timeout + 60,
        )

    def shutdown(self) -> None:
        """Stop every Ray process and remove the namespaces and temporary files."""
        if self._local is not None:
            self._local.shutdown()
        if self.net is not None:
            self.net.remove()
        for proc in self.procs.values():
            proc.wait(timeout=30)
        shutil.rmtree(self.temp, ignore_errors=True)

    # --- starting Ray ------------------------------------------------------------------------------

    def _node(self, name: str) -> None:
        """Start node ``name``: its service, then Ray with one GPU."""
        service = shlex.join(self.node_service(name)) + " && " if self.node_service else ""
        env = {**self.env, **self.node_env(name)}
        self._ray(name, f"--address={self.address}", "--num-gpus=1", "--num-cpus=2", before=service, env=env)

    def _ray(self, machine: str, *args: str, before: str = "", env: dict[str, str] | None = None) -> None:
        """``ray start --block`` on ``machine`` after the shell line ``before``; Ray's other machines' files
        hidden under a tmpfs, and on a node ``hidden`` too."""
        assert self.net is not None
        ray = Path(sys.executable).with_name("ray")
        line = shlex.join(
            [
                str(ray),
                "start",
                "--block",
                f"--node-ip-address={self.net.address(machine)}",
                f"--object-store-memory={OBJECT_STORE}",
                "--disable-usage-stats",
                f"--temp-dir={self.temp / machine}",
                *args,
            ]
        )
        hide = [self.temp, self.hidden] if machine.startswith("node") else [self.temp]  # others' files
        mounts = "".join(f"mount -t tmpfs tmpfs {shlex.quote(str(path))} && " for path in hide)
        with (self.temp / f"{machine}.log").open("ab") as log:
            self.procs[machine] = subprocess.Popen(
                [*self.net.exec(machine), "unshare", "--mount", "sh", "-c", f"{mounts}{before}exec {line}"],
                stdout=log,
                stderr=subprocess.STDOUT,
                env=env or self.env,
            )

    def _node_args(self) -> dict[str, Any]:
        return {
            "node_ip_address": "127.0.0.1",
            "num_cpus": 2,
            "num_gpus": 1,
            "object_store_memory": OBJECT_STORE,
        }

    def _start_loopback(self, nodes: int) -> None:
        os.environ.update(self.env)  # Cluster's processes inherit this process's environment
        from ray.cluster_utils import Cluster  # after the environment: Ray reads its auth mode at import

        self._local = Cluster(
            initialize_head=True,
            head_node_args={
                "node_ip_address": "127.0.0.1",
                "num_cpus": 1,
                "include_dashboard": False,
                "object_store_memory": OBJECT_STORE,
                "_system_config": SYSTEM_CONFIG,
            },
        )
        for _ in range(nodes):
            self._local.add_node(**self._node_args())
        self._local.wait_for_nodes()
