"""``tuneq ship`` and ``tuneq push``: hand a finished run's ``ship/`` folder over.

``ID`` is a job id of the queue or a run directory. Exit codes: 0 done, 1 the copy or upload failed,
2 bad input (unknown job, no finished ship folder).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from runner.cli.exitcodes import EXIT_FAILED, EXIT_OK, EXIT_USAGE
from runner.ship.transfer import (
    ShipError,
    files_of,
    hub_token,
    is_remote,
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
    p = sub.add_parser("push", help="upload a run's ship/ folder to the Hugging Face Hub (token: HF_TOKEN)")
    p.add_argument("run", metavar="ID|RUN_DIR", help="a job id or a run directory")
    p.add_argument("--repo", required=True, help="the model repo, e.g. user/my-model")
    p.add_argument("--dry-run", action="store_true", help="list what would be uploaded, upload nothing")
    p.set_defaults(handler=cmd_push)


def run_dir_of(ref: str) -> Path:
    """The run directory of a job id (looked up in the queue) or of a path."""
    if not ref.isdigit():
        return Path(ref)
    try:
        with Store() as store:
            return Path(store.get(int(ref)).run_dir)
    except (JobError, StoreError) as exc:
        raise ShipError(str(exc)) from None


def cmd_ship(args: argparse.Namespace) -> int:
    """Copy the folder to DEST (or only show it), then print the commands to run the model there."""
    try:
        folder = ship_folder(run_dir_of(args.run))
    except ShipError as exc:
        print(f"tuneq ship: {exc}", file=sys.stderr)
        return EXIT_USAGE
    where = str(folder)
    try:
        if args.dest and is_remote(args.dest):
            print("ran: " + " ".join(to_remote(folder, args.dest)))
            print("check there with: sha256sum -c SHA256SUMS")
            where = args.dest
        elif args.dest:
            for name, how in to_local(folder, Path(args.dest)).items():
                print(f"{how:<7} {name}")
            print(f"checksums verified in {args.dest}")
            where = args.dest
    except (ShipError, OSError) as exc:
        print(f"tuneq ship: {exc}", file=sys.stderr)
        return EXIT_FAILED
    print(f"\nin {where}:\n{(folder / 'commands.txt').read_text()}", end="")
    return EXIT_OK


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
