"""From a job's ``[data]`` to normalized examples: read rows, check columns, normalize, split off eval."""

from __future__ import annotations

import random
from dataclasses import dataclass
from pathlib import Path

from runner.core.secrets import redact_data
from runner.dataset.formats import Example, detect_format, required_columns, to_example
from runner.dataset.read import (
    DataError,
    Row,
    check_hub_id,
    is_local_source,
    parse_split,
    read_hub,
    read_local,
    resolve_local,
)
from runner.spec.model import DataSpec, TemplateSpec

MAX_ROW_PROBLEMS = 5


@dataclass(frozen=True)
class Examples:
    """The normalized train and eval examples and the format that was used."""

    train: list[Example]
    eval: list[Example]
    format: str


def read_rows(
    data: DataSpec, base_dir: Path, local_copy: Path | None = None, split: str | None = None
) -> list[Row]:
    """Rows of ``split`` (default ``data.split``): from the run's copy, the local file, or the hub; with
    secrets redacted, so that no model learns one and no sample, answer or report shows one."""
    split = split or data.split
    if local_copy is not None:
        rows = read_local(local_copy, split)
    elif is_local_source(data.source, base_dir):
        rows = read_local(resolve_local(data.source, base_dir), split)
    else:
        check_hub_id(data.source)
        rows = read_hub(data.source, data.subset, split)
    return [redact_data(row) for row in rows]


def resolve_format(data: DataSpec, rows: list[Row]) -> str:
    """The data format: as set, or detected from the first row; checks every row has its columns.

    A missing column is reported once, with how many rows lack it and the first few of them.
    """
    fmt = data.format if data.format != "auto" else detect_format(set(rows[0]))
    needed = required_columns(fmt, data.columns)
    lacking: dict[str, list[int]] = {}
    for number, row in enumerate(rows, start=1):
        for column in sorted(needed - set(row)):
            lacking.setdefault(column, []).append(number)
    if lacking:
        lines = [
            f"column {column!r} missing in {len(numbers)} of {len(rows)} rows (first: row"
            f"{'s' if len(numbers) > 1 else ''} {', '.join(map(str, numbers[:MAX_ROW_PROBLEMS]))}; "
            f"row {numbers[0]} has {sorted(rows[numbers[0] - 1])})"
            for column, numbers in sorted(lacking.items())
        ]
        raise DataError(
            f"format '{fmt}' needs columns {sorted(needed)} in every row of {data.source}:\n  "
            + "\n  ".join(lines)
        )
    return fmt


def normalize(rows: list[Row], fmt: str, data: DataSpec, template: TemplateSpec) -> list[Example]:
    """Normalize all rows, reporting up to five bad rows at once."""
    examples, problems = [], []
    for number, row in enumerate(rows, start=1):
        try:
            examples.append(to_example(row, fmt, data.columns, template.system, number))
        except DataError as exc:
            problems.append(f"row {number}: {exc}")
    if problems:
        shown = "\n  ".join(problems[:MAX_ROW_PROBLEMS])
        raise DataError(f"{len(problems)} of {len(rows)} rows of {data.source} cannot be used:\n  {shown}")
    return examples


def load_examples(
    data: DataSpec, template: TemplateSpec, base_dir: Path, local_copy: Path | None, seed: int
) -> Examples:
    """Train and eval examples for a job (eval from a named split or a seeded fraction of the rows)."""
    rows = read_rows(data, base_dir, local_copy)
    fmt = resolve_format(data, rows)
    examples = normalize(rows, fmt, data, template)
    if data.shuffle:
        random.Random(seed).shuffle(examples)
    if isinstance(data.eval_split, float):
        n_eval = max(1, round(len(examples) * data.eval_split))
        return Examples(examples[n_eval:], examples[:n_eval], fmt)
    if isinstance(data.eval_split, str):
        parse_split(data.eval_split)
        eval_rows = read_rows(data, base_dir, local_copy, data.eval_split)
        return Examples(examples, normalize(eval_rows, fmt, data, template), fmt)
    return Examples(examples, [], fmt)
