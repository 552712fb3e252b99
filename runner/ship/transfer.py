"""Moving a run's ``ship/`` folder: to a local directory (checked), over ssh, or to the Hugging Face Hub."""

from __future__ import annotations

import ipaddress
import os
import re
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

from runner.core.atomic import aside
from runner.core.failures import is_disk_full
from runner.core.rundir import RunDir
from runner.ship.files import SUMS, link_or_copy, verify_sums

_REMOTE = re.compile(r"(?:(?P<user>[^@/:\[\]]*)@)?(?P<host>\[[^\]]*\]|[^@/:\[\]]*):(?P<path>.*)", re.DOTALL)
USER_NAME = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.-]*")
_HOST = re.compile(r"[A-Za-z0-9_](?:[A-Za-z0-9_.-]*[A-Za-z0-9_])?")  # a host name, IPv4 address or ssh alias
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")


class ShipError(Exception):
    """The folder cannot be shipped as asked (one line a user can act on)."""


class NoRoom(ShipError):
    """The destination's disk filled during the copy (what was copied stays; nothing partial)."""


def ship_folder(run_dir: Path) -> Path:
    """``run_dir/ship``, once the ship stage finished it (its checksums are written last)."""
    run = RunDir(run_dir)
    if not run.ship_sums.exists():
        raise ShipError(
            f"{run_dir} has no finished {run.ship.name}/ folder: the job did not get that far (see {run.report})"
        )
    return run.ship


def files_of(folder: Path) -> list[Path]:
    """The folder's files, sorted by name."""
    return sorted(p for p in folder.iterdir() if p.is_file())


@dataclass(frozen=True)
class Remote:
    """``[user@]host:path`` on another machine, checked part by part."""

    user: str | None
    host: str  # a host name, an IPv4 address, or an IPv6 address in brackets
    path: str  # relative paths start in the remote user's home

    def __str__(self) -> str:
        return f"{self.user}@{self.host}:{self.path}" if self.user else f"{self.host}:{self.path}"


def parse_dest(dest: str) -> Path | Remote:
    """``DEST`` read as scp reads it: ``[user@]host:path`` when a ``:`` comes before any ``/`` (the host
    may be ``[IPv6]``), else a local directory. :class:`ShipError` for anything that could be taken for an
    option or that is not a well-formed remote (user, host and path are each checked)."""
    if not dest:
        raise ShipError("DEST is empty: name a directory or user@host:path")
    if dest.startswith("-"):
        raise ShipError(
            f"DEST {dest!r} looks like an option: write ./{dest} for a local directory of that name"
        )
    if ":" not in dest.split("/", 1)[0]:
        return Path(dest)
    match = _REMOTE.fullmatch(dest)
    if match is None:
        raise ShipError(f"DEST {dest!r} is neither a local path nor [user@]host:path")
    user, host, path = match["user"], match["host"], match["path"]
    if user is not None and not USER_NAME.fullmatch(user):
        raise ShipError(f"DEST {dest!r}: {user!r} is not a valid user name")
    if not valid_host(host):
        raise ShipError(f"DEST {dest!r}: {host!r} is not a valid host name or address ([::1] for IPv6)")
    if path in ("", "~"):
        home = dest.removesuffix(path)
        raise ShipError(f"DEST {dest!r} names no directory: write {home}models/NAME (relative to the home)")
    if _CONTROL.search(path):
        raise ShipError(f"DEST {dest!r}: the remote path holds a control character")
    return Remote(user, host, path.removeprefix("~/"))


def valid_host(host: str) -> bool:
    """A host name, an IPv4 address, an ssh alias or an IPv6 address in brackets."""
    if host.startswith("[") and host.endswith("]"):
        try:
            ipaddress.IPv6Address(host[1:-1])
        except ValueError:
            return False
        return True
    return bool(_HOST.fullmatch(host))


def check_local_dest(dest: Path, folder: Path) -> Path:
    """The absolute directory to ship into: a new or empty one, an earlier ship copy (it holds a
    ``SHA256SUMS``) or an unfinished one (only files of the folder's names), never the ship folder itself;
    anything else (a file, a directory of other files such as ``/etc``) raises :class:`ShipError`."""
    target = dest.resolve()
    if target == folder.resolve():
        raise ShipError(f"{target} is the ship folder itself")
    if target.exists() and not target.is_dir():
        raise ShipError(f"{target} exists and is not a directory")
    ours = {path.name for p in files_of(folder) for path in (p, aside(p))}
    if (
        target.is_dir()
        and not (target / SUMS).is_file()
        and any(p.name not in ours for p in target.iterdir())
    ):
        raise ShipError(f"{target} is a directory of other files (no {SUMS}): name a new or empty directory")
    return target


def to_local(folder: Path, dest: Path) -> dict[str, str]:
    """Hard-link (or copy) every file into ``dest`` (checked by :func:`check_local_dest`), ``SHA256SUMS``
    last, then check it there; file → how it went. :class:`NoRoom` when the disk fills: the files done
    so far stay, ``SHA256SUMS`` is not written, and running it again finishes the copy."""
    dest.mkdir(parents=True, exist_ok=True)
    (dest / SUMS).unlink(missing_ok=True)  # written again last: present only beside a complete copy
    done = {}
    for src in sorted(files_of(folder), key=lambda p: p.name == SUMS):
        try:
            done[src.name] = link_or_copy(src, dest / src.name)
        except OSError as exc:
            if not is_disk_full(exc):
                raise
            raise NoRoom(
                f"no space left on the disk of {dest} for {src.name} ({src.stat().st_size:,} bytes): "
                f"free space there or choose another DEST; run it again to finish the copy"
            ) from None
    bad = verify_sums(dest)
    if bad:
        raise ShipError(f"checksums differ at {dest} for: {', '.join(bad)}")
    return done


def remote_command(folder: Path, dest: Remote) -> list[str]:
    """The rsync (or, without rsync, scp) command that copies the folder's files into ``dest``.

    Every operand follows ``--``, and the remote path never reaches a shell: rsync sends it with
    ``--protect-args`` and scp with ``-s`` (the SFTP protocol), so spaces, quotes and ``;`` stay literal.
    """
    target = f"{Remote(dest.user, dest.host, dest.path.rstrip('/'))}/"
    if shutil.which("rsync"):
        return ["rsync", "-a", "--protect-args", "--", f"{folder}/", target]
    return ["scp", "-p", "-s", "--", *(str(p) for p in files_of(folder)), target]


def to_remote(folder: Path, dest: Remote) -> list[str]:
    """Run :func:`remote_command`; return the command."""
    command = remote_command(folder, dest)
    proc = subprocess.run(command, check=False)
    if proc.returncode != 0:
        raise ShipError(f"{command[0]} exited with {proc.returncode} copying to {dest}")
    return command


def hub_token() -> str:
    """The Hugging Face token: ``HF_TOKEN``, else the one ``hf auth login`` saved (huggingface_hub's own
    lookup, where it is installed)."""
    try:
        from huggingface_hub import get_token
    except ImportError:  # the core install: the environment only
        token = os.environ.get("HF_TOKEN")
    else:
        token = get_token()
    if not token:
        raise ShipError(
            "no Hugging Face token: run `hf auth login`, or export HF_TOKEN (a token with write access)"
        )
    return token


def push(folder: Path, repo: str, token: str) -> str:
    """Upload the folder to the Hub model repo ``repo`` (created if missing); return the commit URL."""
    from huggingface_hub import HfApi

    api = HfApi(token=token)
    api.create_repo(repo, repo_type="model", exist_ok=True)
    commit = api.upload_folder(
        folder_path=str(folder), repo_id=repo, repo_type="model", commit_message="Upload from tuneq"
    )
    return str(commit.commit_url)
