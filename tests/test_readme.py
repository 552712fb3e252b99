"""The README is a five-minute read that does not lie: every `tuneq` line in its shell blocks is a real verb
with real flags, every link leads somewhere, and its first own job validates."""

from __future__ import annotations

import json
import re
import shlex
import subprocess
import sys
from pathlib import Path

import pytest

from runner.cli import build_parser

ROOT = Path(__file__).resolve().parent.parent
README = ROOT / "README.md"
MAX_LINES = 180


def blocks(text: str, language: str) -> list[str]:
    return re.findall(rf"```{language}\n(.*?)```", text, re.S)


def tuneq_lines() -> list[str]:
    lines = [line.strip() for block in blocks(README.read_text(), "bash") for line in block.splitlines()]
    return [line for line in lines if line.startswith("tuneq ")]


def test_the_readme_is_short() -> None:
    assert len(README.read_text().splitlines()) <= MAX_LINES


@pytest.mark.parametrize("line", tuneq_lines())
def test_every_tuneq_command_in_the_readme_parses(line: str) -> None:
    argv = shlex.split(line, comments=True)[1:]
    try:
        build_parser().parse_args(argv)
    except SystemExit as exc:
        pytest.fail(f"README: `{line}` is not a valid tuneq command (exit {exc.code})")


def test_the_readme_shows_the_commands_people_need() -> None:
    verbs = {shlex.split(line, comments=True)[1] for line in tuneq_lines()}
    assert {"validate", "submit", "status", "log", "tui", "cancel", "retry", "ship", "daemon"} <= verbs


@pytest.mark.parametrize("page", [README, *sorted((ROOT / "docs").glob("*.md"))], ids=lambda p: p.name)
def test_every_local_link_leads_somewhere(page: Path) -> None:
    targets = re.findall(r"\]\(([^)#\s]+)(?:#[^)]*)?\)", page.read_text())
    missing = [t for t in targets if "://" not in t and not (page.parent / t).exists()]
    assert not missing, f"{page.name} links to missing files: {missing}"


def test_the_first_own_job_validates(tmp_path: Path) -> None:
    (job,) = blocks(README.read_text(), "toml")
    (tmp_path / "capitals.toml").write_text(job)
    rows = [("France", "Paris"), ("Japan", "Tokyo"), ("Peru", "Lima"), ("Kenya", "Nairobi")]
    (tmp_path / "capitals.jsonl").write_text(
        "".join(
            json.dumps({"question": f"What is the capital of {c}?", "answer": json.dumps({"capital": k})})
            + "\n"
            for c, k in rows
        )
    )
    done = subprocess.run(
        [sys.executable, "-m", "runner", "validate", "capitals.toml"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr
    assert "capitals.toml: valid" in done.stdout
