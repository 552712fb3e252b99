"""``python -m runner.pins NAME``: print an optional-dependency group of pyproject.toml."""

import sys

from runner.pins import extra

print(" ".join(extra(sys.argv[1])))
