"""The optional-dependency groups of pyproject.toml, the one place pins live (``python -m runner.pins NAME``
prints one; ``python -m runner.pins.check`` checks the installed versions against them). Standard library
only: ``python -m runner.bootstrap`` reads them before any virtual environment exists."""

from __future__ import annotations

import re
import tomllib
from pathlib import Path

PYPROJECT = Path(__file__).resolve().parents[2] / "pyproject.toml"
DOCKERFILE = PYPROJECT.with_name("Dockerfile")
MIRROR = PYPROJECT.with_name("Containerfile.mirror")


def extra(name: str) -> list[str]:
    """The requirement strings of ``[project.optional-dependencies].<name>``."""
    data = tomllib.loads(PYPROJECT.read_text())
    group: list[str] = data["project"]["optional-dependencies"][name]
    return group


def build_args(text: str) -> dict[str, str]:
    """The ``ARG NAME=default`` lines of an image file."""
    return dict(re.findall(r"^ARG (\w+)=(\S+)", text, re.M))
