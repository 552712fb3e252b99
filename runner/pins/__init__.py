"""The optional-dependency groups of pyproject.toml, the one place pins live (``python -m runner.pins NAME``
prints one; ``python -m runner.pins.check`` checks the installed versions against them)."""

from __future__ import annotations

import tomllib
from pathlib import Path

PYPROJECT = Path(__file__).resolve().parents[2] / "pyproject.toml"


def extra(name: str) -> list[str]:
    """The requirement strings of ``[project.optional-dependencies].<name>``."""
    data = tomllib.loads(PYPROJECT.read_text())
    group: list[str] = data["project"]["optional-dependencies"][name]
    return group
