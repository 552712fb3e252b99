"""``tuneq``: the command line. Each module here registers its verbs; ``main`` dispatches.

Exit codes: 0 success, 1 a job or test failed, 2 bad input (job file, id, state), 130 interrupted.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence

import argcomplete

from runner.cli import completion, job_cmds, queue_cmds, ship_cmds, tui_cmd
from runner.cli.exitcodes import EXIT_FAILED, EXIT_INTERRUPTED, EXIT_USAGE
from runner.core.paths import StateDirError
from runner.core.secrets import redacted_output

_MODULES = [job_cmds, queue_cmds, ship_cmds, tui_cmd, completion]

# One example per verb, shown at the end of its --help (tests/test_cli_help.py parses each one).
EXAMPLES = {
    "validate": "tuneq validate jobs/*.toml",
    "run": "tuneq run jobs/demo-tiny.toml --run-dir runs/first-try",
    "submit": "tuneq submit jobs/a.toml jobs/b.toml --priority 5",
    "status": "tuneq status --json",
    "show": "tuneq show 3",
    "log": "tuneq log 3 -f",
    "cancel": "tuneq cancel 3 4",
    "retry": "tuneq retry 3 --job jobs/x.toml",
    "remove": "tuneq remove 3 --artifacts",
    "priority": "tuneq priority 3 10",
    "backup": "tuneq backup ~/queue-backup.db",
    "worker": "tuneq worker",
    "notify-test": "tuneq notify-test jobs/x.toml",
    "daemon": "tuneq daemon install",
    "ship": "tuneq ship 3 me@laptop:models/",
    "push": "tuneq push 3 --repo me/my-model --dry-run",
    "tui": "tuneq tui --jobs ~/jobs",
    "completion": "tuneq completion bash",
}


def build_parser() -> argparse.ArgumentParser:
    """The full argument parser (every module's verbs), each verb's help with a description and an example."""
    parser = argparse.ArgumentParser(prog="tuneq", description="Queue, run and ship LoRA fine-tunes.")
    parser.add_argument("--version", action="version", version=f"tuneq {_version()}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for module in _MODULES:
        module.register(sub)
    for verb in sub._choices_actions:  # argparse keeps each verb's one-line help only here
        verb_parser = sub.choices[verb.dest]
        summary = verb.help or verb.dest
        verb_parser.description = verb_parser.description or f"{summary[0].upper()}{summary[1:]}."
        verb_parser.epilog = f"example: {EXAMPLES[verb.dest]}"
    return parser


def _version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("tuneq")
    except PackageNotFoundError:
        return "dev"


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``tuneq`` script: every line it prints passes through the secret redactor."""
    try:
        with redacted_output():
            return _dispatch(argv)
    except BrokenPipeError:  # `tuneq status | head`: the reader stopped reading, no traceback for that
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())  # nor at the exit's flush
        return EXIT_FAILED


def _dispatch(argv: Sequence[str] | None) -> int:
    parser = build_parser()
    argcomplete.autocomplete(parser)  # answers a shell's tab completion and exits; else does nothing
    args = parser.parse_args(argv)
    try:
        code: int = args.handler(args)
    except StateDirError as exc:
        print(f"tuneq: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED
    return code


if __name__ == "__main__":
    sys.exit(main())
