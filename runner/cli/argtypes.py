"""Argument types shared by the verbs: integers the queue database can hold, refused at parsing."""

from __future__ import annotations

import argparse

from runner.cluster.address import ClusterAddressError, split_address
from runner.store.models import SQLITE_INT_MAX


def job_id(text: str) -> int:
    """A job id: a positive integer the database can hold."""
    value = _integer(text, "a job id")
    if not 1 <= value <= SQLITE_INT_MAX:
        raise argparse.ArgumentTypeError(f"{text} is not a job id (ids are 1 to {SQLITE_INT_MAX})")
    return value


def priority(text: str) -> int:
    """A priority: an integer the database can hold (higher runs first)."""
    value = _integer(text, "a priority")
    if abs(value) > SQLITE_INT_MAX:
        raise argparse.ArgumentTypeError(
            f"priority {text} is out of range (-{SQLITE_INT_MAX} to {SQLITE_INT_MAX}; 0 is the default)"
        )
    return value


def cluster_address(text: str) -> str:
    """A Ray cluster address, ``HOST:PORT``."""
    try:
        split_address(text)
    except ClusterAddressError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None
    return text


def _integer(text: str, what: str) -> int:
    try:
        return int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not {what} (an integer)") from None
