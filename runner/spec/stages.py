"""What a change to a job file makes run again: each stage's key is a hash of the sections it depends on
(:data:`runner.core.stages.STAGE_INPUTS`)."""

from __future__ import annotations

import hashlib
import json

from runner.core.stages import STAGE_INPUTS, STAGE_NAMES
from runner.spec.model import JobSpec


def stage_key(spec: JobSpec, stage: str) -> str:
    """Hash of the spec sections ``stage`` depends on (kept in its marker; equal keys allow reuse)."""
    parts = {name: getattr(spec, name).model_dump(mode="json") for name in STAGE_INPUTS[stage]}
    return hashlib.sha256(json.dumps({"stage": stage, **parts}, sort_keys=True).encode()).hexdigest()


def first_changed_stage(old: JobSpec, new: JobSpec) -> tuple[str, list[str]] | None:
    """The first stage whose inputs differ between two versions of a job, with the sections that changed
    (it and every later stage run again); ``None`` when every stage can be reused."""
    for stage in STAGE_NAMES:
        if stage_key(old, stage) != stage_key(new, stage):
            changed = [
                name
                for name in STAGE_INPUTS[stage]
                if getattr(old, name).model_dump(mode="json") != getattr(new, name).model_dump(mode="json")
            ]
            return stage, changed
    return None
