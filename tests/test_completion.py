"""Tab completion through a real bash with the code ``tuneq completion bash`` prints."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

BIN = Path(sys.executable).parent  # the environment's `tuneq` script


def complete(line: str) -> list[str]:
    """What bash offers for ``line`` (the cursor at its end)."""
    words = line.split(" ")
    script = (
        'source <(tuneq completion bash); COMP_LINE="$LINE"; COMP_POINT=${#COMP_LINE}; '
        f"COMP_WORDS=({' '.join(words)}); COMP_CWORD={len(words) - 1}; "
        f'_python_argcomplete tuneq "{words[-1]}" "{words[-2]}"; printf "%s\\n" "${{COMPREPLY[@]}}"'
    )
    env = {**os.environ, "PATH": f"{BIN}{os.pathsep}{os.environ['PATH']}", "LINE": line}
    done = subprocess.run(["bash", "-c", script], capture_output=True, text=True, env=env, timeout=60)
    assert done.returncode == 0, done.stderr
    return [w.strip() for w in done.stdout.splitlines() if w.strip()]


def test_bash_completes_verbs_and_options() -> None:
    assert complete("tuneq ret") == ["retry"]
    assert complete("tuneq retry 3 --j") == ["--job"]
    assert {"status", "submit", "show"} <= set(complete("tuneq s"))


@pytest.mark.parametrize("shell", ["zsh", "fish"])
def test_each_shell_gets_its_own_code(shell: str) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "runner", "completion", shell], capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0 and "tuneq" in done.stdout
    assert ("complete --command tuneq" in done.stdout) == (shell == "fish")
