"""``tuneq completion SHELL``: tab completion of verbs, options and job files (argcomplete).

``eval "$(tuneq completion bash)"`` in ``~/.bashrc`` (zsh alike); for fish,
``tuneq completion fish > ~/.config/fish/completions/tuneq.fish``.
"""

from __future__ import annotations

import argparse

SHELLS = ("bash", "zsh", "fish")


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add ``completion``."""
    p = sub.add_parser(
        "completion",
        help="print the shell code for tab completion",
        description='Tab completion for tuneq. bash: add `eval "$(tuneq completion bash)"` to ~/.bashrc; '
        'zsh: `eval "$(tuneq completion zsh)"` in ~/.zshrc; fish: '
        "`tuneq completion fish > ~/.config/fish/completions/tuneq.fish`.",
    )
    p.add_argument("shell", choices=SHELLS)
    p.set_defaults(handler=_completion)


def _completion(args: argparse.Namespace) -> int:
    import argcomplete

    print(argcomplete.shellcode(["tuneq"], shell=args.shell), end="")
    return 0
