"""From a job's ``[data]`` to normalized examples: read rows, check columns, normalize, split off eval."""

from __future__ import annotations

import difflib
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
    eval_from: str  # how the eval rows were chosen (for the report and ``tuneq validate``)


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


def resolve_format(data: DataSpec, rows: list[Row], first: int = 1) -> str:
    """The data format: as set, or detected from the first row; checks every row has its columns.

    A missing column is reported once, with how many rows lack it and the first few of them (rows are
    numbered from ``first``, the first one's number in the file).
    """
    fmt = data.format if data.format != "auto" else detect_format(set(rows[0]), data.source, first)
    needed = required_columns(fmt, data.columns)
    lacking: dict[str, list[int]] = {}
    for number, row in enumerate(rows, start=first):
        for column in sorted(needed - set(row)):
            lacking.setdefault(column, []).append(number)
    if lacking:
        lines = [
            f"column {column!r} missing in {len(numbers)} of {len(rows)} rows (first: row"
            f"{'s' if len(numbers) > 1 else ''} {', '.join(map(str, numbers[:MAX_ROW_PROBLEMS]))}; "
            f"row {numbers[0]} has {sorted(rows[numbers[0] - first])})"
            + _did_you_mean(column, rows[numbers[0] - first])
            for column, numbers in sorted(lacking.items())
        ]
        raise DataError(
            f"format '{fmt}' needs columns {sorted(needed)} in every row of {data.source}:\n  "
            + "\n  ".join(lines)
        )
    return fmt


def _did_you_mean(column: str, row: Row) -> str:
    close = difflib.get_close_matches(column, [str(c) for c in row], n=1, cutoff=0.6)
    return f"; did you mean {close[0]!r}?" if close else ""


def normalize(
    rows: list[Row], fmt: str, data: DataSpec, template: TemplateSpec, first: int = 1
) -> list[Example]:
    """Normalize all rows (numbered from ``first``), reporting up to five bad rows at once."""
    examples, problems = [], []
    for number, row in enumerate(rows, start=first):
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
    """Train and eval examples for a job (eval from a named split or a seeded fraction of the rows).

    Train and eval rows never overlap: a fraction is cut from the shuffled rows; a named eval split of
    the same split (always so for a local file, which has one) must take other rows than ``data.split``,
    else :class:`DataError` on ``data.eval_split``. ``Examples.eval_from`` says how the eval rows were chosen.
    """
    if isinstance(data.eval_split, str):
        (rows, first), (eval_rows, eval_first), eval_from = _named_eval_split(
            data, data.eval_split, base_dir, local_copy
        )
    else:
        (rows, first), (eval_rows, eval_first) = (
            _numbered_rows(data, data.split, base_dir, local_copy),
            ([], 1),
        )
        eval_from = "none (no data.eval_split)"
    fmt = resolve_format(data, rows, first)
    examples = normalize(rows, fmt, data, template, first)
    if data.shuffle:
        random.Random(seed).shuffle(examples)
    if isinstance(data.eval_split, float):
        n_eval = max(1, round(len(examples) * data.eval_split))
        held_out = (
            f"{n_eval} of {len(examples)} rows of split '{data.split}' held out at random "
            f"(eval_split {data.eval_split:g}, seed {seed}), none of them trained on"
        )
        return Examples(examples[n_eval:], examples[:n_eval], fmt, held_out)
    evals = normalize(eval_rows, fmt, data, template, eval_first) if eval_rows else []
    return Examples(examples, evals, fmt, eval_from)


Numbered = tuple[list[Row], int]  # rows and the number of the first in its file (or hub split)


def _numbered_rows(data: DataSpec, split: str, base_dir: Path, local_copy: Path | None) -> Numbered:
    """The rows of ``split``, numbered as in the file: a local file is read whole, then sliced."""
    if local_copy is None and not is_local_source(data.source, base_dir):
        return read_rows(data, base_dir, local_copy, split), 1
    part = parse_split(split)
    everything = read_rows(data, base_dir, local_copy, part.name)
    taken = part.indices(len(everything))
    return [everything[i] for i in taken], taken.start + 1


def _named_eval_split(
    data: DataSpec, eval_split: str, base_dir: Path, local_copy: Path | None
) -> tuple[Numbered, Numbered, str]:
    """Train rows, eval rows and how the eval rows were chosen, for a named ``data.eval_split``.

    Another hub split is disjoint by the dataset's making; rows of the same split (a local file has only
    one) are taken by index, and an overlap with the training rows is refused.
    """
    train = parse_split(data.split)
    try:
        held = parse_split(eval_split)
    except DataError as exc:
        raise DataError(str(exc), key="data.eval_split") from None
    local = local_copy is not None or is_local_source(data.source, base_dir)
    if not local and train.name != held.name:
        return (
            _numbered_rows(data, data.split, base_dir, local_copy),
            _numbered_rows(data, eval_split, base_dir, local_copy),
            f"hub split '{eval_split}' of {data.source}",
        )
    everything = read_rows(data, base_dir, local_copy, train.name)
    trained, evaluated = train.indices(len(everything)), held.indices(len(everything))
    where = "the local file" if local else f"split '{train.name}'"
    if common := sorted(set(trained) & set(evaluated)):
        raise DataError(
            f"eval_split '{eval_split}' takes {len(common)} of the rows split '{data.split}' trains on "
            f"({_rows_text(common)} of {len(everything)} in {where}"
            + ("; a local file has one split, so its name is ignored" if local else "")
            + "): eval rows must not be training rows; use a fraction (eval_split = 0.1) or disjoint "
            "slices (split = 'train[:90%]', eval_split = 'train[90%:]')",
            key="data.eval_split",
        )
    if not evaluated:
        raise DataError(
            f"eval_split '{eval_split}' takes no row of the {len(everything)} in {where}: "
            "use a fraction (eval_split = 0.1) or a slice that holds rows",
            key="data.eval_split",
        )
    chosen = f"{_rows_text(list(evaluated))} of {where} (eval_split '{eval_split}'), none of them trained on"
    return (
        ([everything[i] for i in trained], trained.start + 1),
        ([everything[i] for i in evaluated], evaluated.start + 1),
        chosen,
    )


def _rows_text(indices: list[int]) -> str:
    """``rows 71-80`` for 0-based indices (the first and last when they are not one run)."""
    first, last = indices[0] + 1, indices[-1] + 1
    return f"row {first}" if first == last else f"rows {first}-{last}"
