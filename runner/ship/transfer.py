"""Moving a run's ``ship/`` folder: to a local directory (checked), over ssh, or to the Hugging Face Hub."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from pathlib import Path

from runner.ship.files import SUMS, link_or_copy, verify_sums

_REMOTE = re.compile(r"^(?:[\w.-]+@)?[\w.-]+:")  # user@host:path or host:path, as scp and rsync read them


class ShipError(Exception):
    """The folder cannot be shipped as asked (one line a user can act on)."""


def ship_folder(run_dir: Path) -> Path:
    """``run_dir/ship``, once the ship stage finished it (its ``SHA256SUMS`` is written last)."""
    folder = run_dir / "ship"
    if not (folder / SUMS).exists():
        raise ShipError(
            f"{run_dir} has no finished ship/ folder: the job did not get that far "
            f"(see {run_dir / 'report.json'})"
        )
    return folder


def files_of(folder: Path) -> list[Path]:
    """The folder's files, sorted by name."""
    return sorted(p for p in folder.iterdir() if p.is_file())


def is_remote(dest: str) -> bool:
    """Whether ``dest`` names another machine (``user@host:path``)."""
    return bool(_REMOTE.match(dest))


def to_local(folder: Path, dest: Path) -> dict[str, str]:
    """Hard-link (or copy) every file into ``dest``, then check ``SHA256SUMS`` there; file → how it went."""
    dest.mkdir(parents=True, exist_ok=True)
    if dest.resolve() == folder.resolve():
        raise ShipError(f"{dest} is the ship folder itself")
    done = {p.name: link_or_copy(p, dest / p.name) for p in files_of(folder)}
    bad = verify_sums(dest)
    if bad:
        raise ShipError(f"checksums differ at {dest} for: {', '.join(bad)}")
    return done


def to_remote(folder: Path, dest: str) -> list[str]:
    """Copy the files to ``user@host:path`` with rsync (or scp when rsync is missing); return the command."""
    files = [str(p) for p in files_of(folder)]
    if shutil.which("rsync"):
        command = ["rsync", "-a", f"{folder}/", f"{dest.rstrip('/')}/"]
    else:
        command = ["scp", "-p", *files, f"{dest.rstrip('/')}/"]
    proc = subprocess.run(command, check=False)
    if proc.returncode != 0:
        raise ShipError(f"{command[0]} exited with {proc.returncode} copying to {dest}")
    return command


def hub_token() -> str:
    """The Hugging Face token, from the environment only."""
    token = os.environ.get("HF_TOKEN")
    if not token:
        raise ShipError("HF_TOKEN is not set: export a Hugging Face token with write access")
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
