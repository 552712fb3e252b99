"""``tuneq tui``: the terminal UI (Textual loads only when this verb runs)."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from runner.cli.exitcodes import EXIT_FAILED, EXIT_USAGE
from runner.ship.transfer import ShipError
from runner.store import StoreError


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add ``tui``."""
    p = sub.add_parser("tui", help="the terminal UI: queue, submit, watch and ship jobs")
    p.add_argument(
        "--jobs",
        type=Path,
        default=Path("jobs"),
        metavar="DIR",
        help="where the submit screen looks for job files (default: ./jobs)",
    )
    p.set_defaults(handler=_tui)


def _tui(args: argparse.Namespace) -> int:
    from tui.app import run

    try:
        return run(args.jobs)
    except StoreError as exc:
        print(f"tuneq: {exc}", file=sys.stderr)
        return EXIT_FAILED
    except ShipError as exc:
        print(f"tuneq tui: {exc}", file=sys.stderr)
        return EXIT_USAGE
