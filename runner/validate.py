"""``tuneq validate``: everything that can be checked before a GPU is touched.

The schema (every problem at once, with file, line and key), then the data as far as it is reachable
offline: a local file exists and parses, the format's columns exist in every row, the row count, and —
with the tokenizer — how many examples keep a token to learn from after truncation. Hub datasets are
not fetched when the hub is unreachable: they are reported as "not checked (offline)".
"""

from __future__ import annotations

import os
import socket
from dataclasses import dataclass, field
from pathlib import Path

from runner.dataset.build import load_examples
from runner.dataset.read import DataError, check_hub_id, is_local_source, resolve_local
from runner.spec import LoadedSpec, Problem, SpecError, load_spec
from runner.templates import Tokenized

HUB_HOST = ("huggingface.co", 443)


@dataclass
class DataCheck:
    """What validation learned about a job's data."""

    status: str  # "checked" | "not checked (offline)"
    train_rows: int | None = None
    eval_rows: int | None = None
    format: str | None = None
    notes: list[str] = field(default_factory=list)


def hub_reachable(timeout: float = 2.0) -> bool:
    """Whether the model hub answers (False when HF_HUB_OFFLINE is set)."""
    if os.environ.get("HF_HUB_OFFLINE", "").lower() in ("1", "true", "yes"):
        return False
    try:
        with socket.create_connection(HUB_HOST, timeout=timeout):
            return True
    except OSError:
        return False


def check_data(loaded: LoadedSpec) -> DataCheck:
    """Read the job's rows where possible and check them; raise :class:`SpecError` naming ``data.*`` keys."""
    data = loaded.spec.data
    where = str(loaded.path)
    local = is_local_source(data.source, loaded.base_dir)
    try:
        if not local:
            check_hub_id(data.source)
            if not hub_reachable():
                return DataCheck("not checked (offline)")
        examples = load_examples(data, loaded.spec.template, loaded.base_dir, None, loaded.spec.train.seed)
    except DataError as exc:
        key = "data.columns" if "column" in str(exc) else "data.source"
        hint = "relative paths are taken from the job file's directory" if "not found" in str(exc) else None
        raise SpecError([Problem(where, None, key, str(exc), hint)]) from None
    check = DataCheck("checked", len(examples.train), len(examples.eval), examples.format)
    if local:
        check.notes.append(f"source {resolve_local(data.source, loaded.base_dir)}")
    return check


def validate_file(path: str | Path) -> tuple[LoadedSpec, DataCheck]:
    """Schema and data checks for one job file; :class:`SpecError` lists every problem found."""
    loaded = load_spec(path)
    return loaded, check_data(loaded)


@dataclass(frozen=True)
class LabelCheck:
    """Token-level facts over the training examples, and one rendered sample."""

    examples: int
    no_target: int
    truncated: int
    sample: str
    truncation: str | None = None  # which examples truncation cuts, and by how many tokens


def check_labels(loaded: LoadedSpec, limit: int = 2000) -> LabelCheck:
    """Tokenize up to ``limit`` examples with the model's tokenizer: count ones that would train nothing."""
    from runner.models.resolve import load_tokenizer
    from runner.pipeline.data import render_sample
    from runner.templates import tokenize_example, truncation_warning

    spec = loaded.spec
    examples = load_examples(spec.data, spec.template, loaded.base_dir, None, spec.train.seed).train[:limit]
    tokenizer = load_tokenizer(spec.model.base, spec.model.revision, spec.model.trust_remote_code)
    rows: list[Tokenized] = [
        tokenize_example(e, spec.template, tokenizer, spec.model.max_seq_length) for e in examples
    ]
    return LabelCheck(
        len(rows),
        sum(r.trainable == 0 for r in rows),
        sum(r.truncated for r in rows),
        render_sample(rows[0], tokenizer),
        truncation_warning(examples, rows, spec.model.max_seq_length),
    )
