"""The pipeline's stages in the order they run: the ``stage`` of their events and of their markers.

:mod:`runner.pipeline.run` chains the stage functions in this order (a test checks that it does); readers
of events (the TUI's timeline) take the names from here and so never load the pipeline.
"""

from __future__ import annotations

STAGE_NAMES = ("data", "train", "lora", "merged", "gguf", "quantize", "smoke", "fidelity", "ship")
