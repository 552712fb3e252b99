"""The core every part of tuneq may import: it imports nothing heavy and nothing of tuneq's other parts.

:mod:`~runner.core.stages` names the pipeline's stages (the event contract's ``stage`` field),
:mod:`~runner.core.workers` says whether a worker is alive, :mod:`~runner.core.present` holds the words
the CLI and the TUI both print for jobs. ``pyproject.toml``'s import-linter contracts keep it so.
"""
