"""Every verb's --help says what it does and shows an example that is itself a valid command."""

from __future__ import annotations

import shlex
import subprocess
import sys

import pytest

from runner.cli import EXAMPLES, build_parser

VERBS = sorted(build_parser()._subparsers._group_actions[0].choices)  # type: ignore[union-attr]


def test_every_verb_has_an_example() -> None:
    assert set(VERBS) == set(EXAMPLES)


@pytest.mark.parametrize("verb", VERBS)
def test_each_help_has_a_description_and_an_example_that_parses(verb: str) -> None:
    done = subprocess.run([sys.executable, "-m", "runner", verb, "--help"], capture_output=True, text=True)
    assert done.returncode == 0
    usage, description, *_ = done.stdout.split("\n\n")
    assert description.strip() and not description.startswith("positional") and verb in usage
    example = done.stdout.strip().splitlines()[-1].removeprefix("example: ")
    assert example == EXAMPLES[verb]
    build_parser().parse_args(shlex.split(example)[1:])  # SystemExit here: an example that does not parse
