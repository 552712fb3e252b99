"""The pipeline's stages in the order they run (the ``stage`` of their events and of their markers), and
the job-file sections each one's output depends on.

:mod:`runner.pipeline.run` chains the stage functions in this order (a test checks that it does); readers
of events (the TUI's timeline) and ``tuneq retry --job`` take them from here and so never load the pipeline.
"""

from __future__ import annotations

STAGE_NAMES = ("data", "train", "lora", "merged", "gguf", "quantize", "smoke", "fidelity", "ship")

_TRAINING = ("model", "data", "template", "lora", "train")
# A stage is reused while these sections of the job file are unchanged (and its outputs exist); once one
# stage runs again, every later one does too.
STAGE_INPUTS: dict[str, tuple[str, ...]] = {
    "data": ("model", "data", "template"),
    "train": _TRAINING,
    "lora": (*_TRAINING, "export"),
    "merged": _TRAINING,
    "gguf": (*_TRAINING, "export"),
    "quantize": (*_TRAINING, "export"),
    "smoke": (*_TRAINING, "export", "smoke"),
    "fidelity": (*_TRAINING, "export", "smoke"),
    "ship": (*_TRAINING, "export", "smoke"),
}
