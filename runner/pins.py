"""Print an optional-dependency group of pyproject.toml (the one place pins live): ``python -m runner.pins NAME``."""

from __future__ import annotations

import sys
import tomllib
from pathlib import Path

PYPROJECT = Path(__file__).resolve().parent.parent / "pyproject.toml"


def extra(name: str) -> list[str]:
    """The requirement strings of ``[project.optional-dependencies].<name>``."""
    data = tomllib.loads(PYPROJECT.read_text())
    group: list[str] = data["project"]["optional-dependencies"][name]
    return group


if __name__ == "__main__":
    print(" ".join(extra(sys.argv[1])))
