"""``tuneq ship`` and ``tuneq push``: hand a finished run's ``ship/`` folder over.

``ID`` is a job id of the queue or a run directory. ``DEST`` is a local directory (new, empty or an earlier
copy) or ``[user@]host:path``; anything else is refused before anything is copied. A folder left on this
machine comes with the scp and rsync commands that fetch it from a laptop (:mod:`runner.ship.reach` says
which host and port they name). Exit codes: 0 done, 1 the copy or upload failed, 2 bad input (unknown job,
no finished ship folder, a DEST refused, an unusable ship host setting, no room for the copy).
"""

from __future__ import annotations

import argparse
import shlex
import sys
from pathlib import Path
from typing import Any

from runner.cli import argtypes
from runner.cli.exitcodes import EXIT_FAILED, EXIT_OK, EXIT_USAGE
from runner.core.paths import state_dir
from runner.core.rundir import LAYOUT, SUMS
from runner.ship.reach import SHIP_HOST_ENV, SHIP_HOST_FILE, SshHost, ship_host
from runner.ship.transfer import (
    NoRoom,
    Remote,
    ShipError,
    check_local_dest,
    files_of,
    hub_token,
    parse_dest,
    push,
    ship_folder,
    to_local,
    to_remote,
)
from runner.store import JobError, Store, StoreError


def register(sub: Any) -> None:
    """Add ``ship`` and ``push``."""
    p = sub.add_parser("ship", help="copy a run's ship/ folder somewhere and print how to run it")
    p.add_argument("run", metavar="ID|RUN_DIR", help="a job id or a run directory")
    p.add_argument(
        "dest",
        nargs="?",
        metavar="DEST",
        help="a directory (hard-links where possible, checksums verified) or user@host:path",
    )
    p.set_defaults(handler=cmd_ship)
    p = sub.add_parser(
        "push",
        help="upload a run's ship/ folder to the Hugging Face Hub (token: HF_TOKEN or `hf auth login`)",
    )
    p.add_argument("run", metavar="ID|RUN_DIR", help="a job id or a run directory")
    p.add_argument("--repo", required=True, help="the model repo, e.g. user/my-model")
    p.add_argument("--dry-run", action="store_true", help="list what would be uploaded, upload nothing")
    p.set_defaults(handler=cmd_push)


def run_dir_of(ref: str) -> Path:
    """The run directory of a job id (looked up in the queue) or of a path."""
    if not ref.isdigit():
        return Path(ref)
    try:
        job_id = argtypes.job_id(ref)
        with Store() as store:
            return Path(store.get(job_id).run_dir)
    except (JobError, StoreError, argparse.ArgumentTypeError) as exc:
        raise ShipError(str(exc)) from None


def cmd_ship(args: argparse.Namespace) -> int:
    """Copy the folder to DEST (or only show it), then print the commands to run the model there."""
    try:
        folder = ship_folder(run_dir_of(args.run))
        dest = parse_dest(args.dest) if args.dest is not None else None
        if isinstance(dest, Path):
            dest = check_local_dest(dest, folder)
        host = None if isinstance(dest, Remote) else ship_host(state_dir())
    except ShipError as exc:
        print(f"tuneq ship: {exc}", file=sys.stderr)
        return EXIT_USAGE
    where = str(folder)
    try:
        if isinstance(dest, Remote):
            print("ran: " + shlex.join(to_remote(folder, dest)))
            print(f"check there with: sha256sum -c {SUMS}")
            where = str(dest)
        elif dest is not None:
            for name, how in to_local(folder, dest).items():
                print(f"{how:<7} {name}")
            print(f"checksums verified in {dest}")
            where = str(dest)
    except NoRoom as exc:
        print(f"tuneq ship: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except (ShipError, OSError) as exc:
        print(f"tuneq ship: {exc}", file=sys.stderr)
        return EXIT_FAILED
    if host is not None:
        print(fetch_text(host, dest if isinstance(dest, Path) else folder.resolve()))
    print(f"\nin {where}:\n{(folder / LAYOUT.ship_commands.name).read_text()}", end="")
    return EXIT_OK


def fetch_text(host: SshHost, folder: Path) -> str:
    """The commands that fetch the absolute ``folder`` from a laptop (into ``./<its name>``, the run
    directory's for a ``ship/`` folder), and where their host came from."""
    name = folder.parent.name if folder.name == LAYOUT.ship.name else folder.name
    return (
        f"\nfetch it to your laptop (host from {host.source}; "
        f"set {SHIP_HOST_ENV} or {state_dir() / SHIP_HOST_FILE} to change it):\n"
        f"  {host.rsync(f'{folder}/', f'./{name}/')}\n"
        f"  {host.scp(str(folder), f'./{name}', folder=True)}"
    )


def cmd_push(args: argparse.Namespace) -> int:
    """Upload the folder with huggingface_hub, or list it with ``--dry-run``."""
    try:
        folder = ship_folder(run_dir_of(args.run))
        token = None if args.dry_run else hub_token()
    except ShipError as exc:
        print(f"tuneq push: {exc}", file=sys.stderr)
        return EXIT_USAGE
    files = files_of(folder)
    verb = "would upload" if args.dry_run else "uploading"
    print(
        f"{verb} {len(files)} files ({sum(p.stat().st_size for p in files):,} bytes) to "
        f"https://huggingface.co/{args.repo}:"
    )
    for path in files:
        print(f"  {path.name}  {path.stat().st_size:,} bytes")
    if token is None:
        return EXIT_OK
    try:
        print(f"done: {push(folder, args.repo, token)}")
    except Exception as exc:  # the hub client raises many types (HTTP, network, auth)
        print(f"tuneq push: the upload failed: {exc}", file=sys.stderr)
        return EXIT_FAILED
    return EXIT_OK
