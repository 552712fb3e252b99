"""How a laptop reaches this machine over ssh, for the commands that fetch a shipped GGUF from it.

The first of these that is set wins:

1. ``$TUNEQ_SHIP_HOST``;
2. the file ``ship_host`` in the state directory (one line; per queue, read by ``tuneq ship`` and the TUI);
3. the server end of ``$SSH_CONNECTION`` (the address and port this ssh session came in on);
4. this machine's name, on ssh's default port.

A setting is ``[user@]host[:port]``, an IPv6 address in brackets (``root@[2001:db8::7]:2222``); the user
defaults to the current one. On a rented server behind a forwarded port (the provider's ``ssh -p 41234
root@ssh4.example.net``) ``$SSH_CONNECTION`` names the inner address and port 22: write the outer ones into
``ship_host``.
"""

from __future__ import annotations

import getpass
import ipaddress
import os
import re
import shlex
import socket
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from runner.ship.transfer import USER_NAME, ShipError, valid_host

SHIP_HOST_ENV = "TUNEQ_SHIP_HOST"
SHIP_HOST_FILE = "ship_host"
SSH_PORT = 22
_SETTING = re.compile(r"(?:(?P<user>[^@]*)@)?(?P<host>\[[^\]]*\]|[^:\[\]]*)(?::(?P<port>[^:]*))?")
_EXAMPLE = "root@ssh4.example.net:41234"


@dataclass(frozen=True)
class SshHost:
    """``user@host`` and port as seen from the laptop, and where that came from (for the labels)."""

    user: str
    host: str  # a host name, an IPv4 address, or an IPv6 address in brackets
    port: int | None  # None: ssh's default
    source: str

    def remote(self, path: str) -> str:
        """``user@host:path``, the path quoted for the laptop's shell."""
        return f"{self.user}@{self.host}:{shlex.quote(path)}"

    def scp(self, path: str, dest: str = ".", *, folder: bool = False) -> str:
        """The scp command that fetches ``path`` into ``dest`` on the laptop."""
        flags = ["-r"] * folder + (["-P", str(self.port)] if self.port else [])
        return shlex.join(["scp", *flags]) + f" {self.remote(path)} {shlex.quote(dest)}"

    def rsync(self, path: str, dest: str = ".") -> str:
        """The resumable rsync command that fetches ``path`` (a folder when it ends with ``/``)."""
        flags = ["-avP", *(["-e", f"ssh -p {self.port}"] if self.port else [])]
        return shlex.join(["rsync", *flags]) + f" {self.remote(path)} {shlex.quote(dest)}"


def ship_host(state: Path, env: Mapping[str, str] = os.environ) -> SshHost:
    """Where the laptop reaches this machine (the module's order); :class:`ShipError` for a setting
    that is not ``[user@]host[:port]``."""
    if setting := env.get(SHIP_HOST_ENV, "").strip():
        return parse_setting(setting, f"${SHIP_HOST_ENV}")
    file = state / SHIP_HOST_FILE
    try:
        setting = file.read_text(encoding="utf-8").strip()
    except FileNotFoundError:
        setting = ""
    except (OSError, UnicodeDecodeError) as exc:
        raise ShipError(f"{file} cannot be read ({exc}): fix or remove it") from None
    if setting:
        return parse_setting(setting, str(file))
    if connection := _from_ssh_connection(env.get("SSH_CONNECTION", "")):
        return connection
    return SshHost(getpass.getuser(), socket.getfqdn(), None, "this machine's name")


def parse_setting(setting: str, source: str) -> SshHost:
    """``[user@]host[:port]`` read from ``source``; :class:`ShipError` naming it and the fix."""
    match = _SETTING.fullmatch(setting)
    fix = f"write [user@]host[:port], e.g. {_EXAMPLE} ([addr]:port for IPv6)"
    if match is None or not valid_host(match["host"]):
        raise ShipError(f"{source}: {setting!r} is not a host: {fix}")
    user, port = match["user"], match["port"]
    if user is not None and not USER_NAME.fullmatch(user):
        raise ShipError(f"{source}: {user!r} is not a valid user name: {fix}")
    if port is not None and not (port.isdigit() and port.isascii() and 1 <= int(port) <= 65535):
        raise ShipError(f"{source}: {port!r} is not a port (1 to 65535): {fix}")
    return SshHost(user or getpass.getuser(), match["host"], _port(int(port)) if port else None, source)


def _from_ssh_connection(value: str) -> SshHost | None:
    """The server address and port of ``$SSH_CONNECTION`` (``client port server port``), if well formed."""
    parts = value.split()
    if len(parts) != 4 or not parts[3].isdigit():
        return None
    try:
        address = ipaddress.ip_address(parts[2])
    except ValueError:
        return None
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped:
        address = address.ipv4_mapped
    host = f"[{address}]" if address.version == 6 else str(address)
    return SshHost(getpass.getuser(), host, _port(int(parts[3])), "$SSH_CONNECTION")


def _port(port: int) -> int | None:
    return None if port == SSH_PORT else port
