"""Network namespaces the tests make, so that test traffic never reaches a real network.

A :class:`Network` is a private switch — a bridge in a namespace of its own — and member namespaces, each
joined to it by a veth pair (``eth0`` inside the member) with its own address. Nothing is added to the
host's namespace and no member has a route beyond the switch, so packets go nowhere else. A member without
an address has loopback only. :meth:`Network.remove` kills every process left in the namespaces (by the
ids ``ip netns pids`` lists) and deletes them. Needs root, ``ip``, ``nsenter`` and ``unshare``;
:func:`unavailable` says why not.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import shutil
import signal
import subprocess
from dataclasses import dataclass, field

SWITCH = "br0"


def ip(*args: str) -> None:
    """Run ``ip ARGS``; a failure raises with its message."""
    done = subprocess.run(["ip", *args], capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise OSError(f"ip {' '.join(args)}: {done.stderr.strip()}")


def unavailable() -> str | None:
    """Why this process cannot make network namespaces (``None`` if it can: it made and removed one);
    ``TUNEQ_TEST_NETNS=0`` says not to (to run the loopback fallbacks)."""
    if os.environ.get("TUNEQ_TEST_NETNS") == "0":
        return "TUNEQ_TEST_NETNS=0"
    if os.geteuid() != 0:
        return "needs root"
    missing = [tool for tool in ("ip", "nsenter", "unshare") if shutil.which(tool) is None]
    if missing:
        return f"needs {' and '.join(missing)}"
    probe = f"tq-probe-{secrets.token_hex(3)}"
    try:
        ip("netns", "add", probe)
        ip("netns", "del", probe)
    except OSError as exc:
        return str(exc)
    return None


@dataclass
class Network:
    """A switch and the member namespaces on it (``name`` -> the namespace's own name and address)."""

    prefix: str = field(default_factory=lambda: f"tq-{secrets.token_hex(3)}")
    members: dict[str, str | None] = field(default_factory=dict)  # name -> address (None: loopback only)

    def __post_init__(self) -> None:
        ip("netns", "add", self.switch)
        ip("-n", self.switch, "link", "add", SWITCH, "type", "bridge")
        ip("-n", self.switch, "link", "set", SWITCH, "up")

    @property
    def switch(self) -> str:
        return f"{self.prefix}-sw"

    def netns(self, name: str) -> str:
        """The namespace of member ``name``."""
        return f"{self.prefix}-{name}"

    def add(self, name: str, address: str | None = None, gateway: str | None = None) -> str:
        """A member namespace with loopback up and, given ``ADDRESS/PREFIX``, ``eth0`` on the switch
        (``gateway``: a default route through that address, which nothing answers). Its namespace name."""
        ns = self.netns(name)
        ip("netns", "add", ns)
        self.members[name] = address.partition("/")[0] if address else None
        ip("-n", ns, "link", "set", "lo", "up")
        if address:
            port = f"p-{name}"[:15]
            ip("-n", ns, "link", "add", "eth0", "type", "veth", "peer", "name", port, "netns", self.switch)
            ip("-n", self.switch, "link", "set", port, "master", SWITCH, "up")
            ip("-n", ns, "addr", "add", address, "dev", "eth0")
            ip("-n", ns, "link", "set", "eth0", "up")
            if gateway:
                ip("-n", ns, "route", "add", "default", "via", gateway, "dev", "eth0")
        return ns

    def address(self, name: str) -> str:
        """Member ``name``'s address on the switch."""
        found = self.members[name]
        assert found, f"{name} has loopback only"
        return found

    def exec(self, name: str) -> list[str]:
        """The command prefix that runs a program in member ``name``'s namespace (``nsenter``, not ``ip
        netns exec``, which mounts a sysfs over /sys that hides the cgroup mount container runtimes need)."""
        return ["nsenter", f"--net=/run/netns/{self.netns(name)}"]

    def link(self, name: str, up: bool) -> None:
        """Plug member ``name``'s cable into the switch, or pull it (its switch port up or down)."""
        ip("-n", self.switch, "link", "set", f"p-{name}"[:15], "up" if up else "down")

    def kill(self, name: str) -> None:
        """Kill every process in member ``name``'s namespace (a machine switched off)."""
        found = subprocess.run(
            ["ip", "netns", "pids", self.netns(name)], capture_output=True, text=True, check=False
        ).stdout.split()
        for pid in found:
            with contextlib.suppress(ProcessLookupError):
                os.kill(int(pid), signal.SIGKILL)

    def remove(self) -> None:
        """Kill what runs in the namespaces and delete them (the veth pairs go with them)."""
        for name in self.members:
            self.kill(name)
            subprocess.run(["ip", "netns", "del", self.netns(name)], capture_output=True, check=False)
        subprocess.run(["ip", "netns", "del", self.switch], capture_output=True, check=False)
        self.members.clear()
