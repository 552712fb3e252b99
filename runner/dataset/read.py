"""Read rows from a local json / jsonl / csv / parquet file or a hub dataset, with split slicing.

Local files are read with the standard library (parquet with pyarrow), so ``tuneq validate`` can check
them without the training stack. Every failure is a :class:`DataError` with a message for the user.
"""

from __future__ import annotations

import csv
import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

Row = dict[str, Any]
LOCAL_SUFFIXES = (".json", ".jsonl", ".csv", ".parquet")
_SPLIT = re.compile(r"^(?P<name>[A-Za-z0-9_.-]+)(\[(?P<start>-?\d*%?)?:(?P<stop>-?\d*%?)?\])?$")


class DataError(Exception):
    """A problem with a job's data, phrased for the user."""


@dataclass(frozen=True)
class SplitSlice:
    """``train[0:500]`` or ``train[:10%]`` parsed."""

    name: str
    start: str | None = None
    stop: str | None = None

    def apply(self, rows: list[Row]) -> list[Row]:
        """Slice a list of rows like the hub's split syntax does."""
        return rows[_bound(self.start, len(rows)) : _bound(self.stop, len(rows))]


def _bound(text: str | None, n: int) -> int | None:
    if not text:
        return None
    if text.endswith("%"):
        return round(n * int(text[:-1]) / 100)
    return int(text)


def parse_split(split: str) -> SplitSlice:
    """Parse a split expression; raise :class:`DataError` on a malformed one."""
    match = _SPLIT.match(split.strip())
    if not match:
        raise DataError(f"split '{split}' is not of the form 'train', 'train[0:500]' or 'train[:10%]'")
    return SplitSlice(match["name"], match["start"] or None, match["stop"] or None)


def is_local_source(source: str) -> bool:
    """Whether ``data.source`` names a local file (by suffix or path shape) rather than a hub id."""
    return source.endswith(LOCAL_SUFFIXES) or source.startswith(("/", "./", "../", "~"))


def resolve_local(source: str, base_dir: Path) -> Path:
    """The absolute path of a local source, relative paths taken from the job file's directory."""
    path = Path(source).expanduser()
    return path if path.is_absolute() else (base_dir / path).resolve()


def read_local(path: Path, split: str = "train") -> list[Row]:
    """All rows of a local file, sliced by ``split``'s range (its name is ignored for one file)."""
    if not path.exists():
        raise DataError(f"data file {path} not found")
    if path.is_dir():
        raise DataError(f"data source {path} is a directory; name a .jsonl/.json/.csv/.parquet file")
    if not path.is_file():  # checked before opening: reading a FIFO or a device never ends
        raise DataError(f"data source {path} is not a regular file (a device, FIFO or socket)")
    suffix = path.suffix.lower()
    try:
        if suffix == ".jsonl":
            rows = _read_jsonl(path)
        elif suffix == ".json":
            rows = _read_json(path)
        elif suffix == ".csv":
            with path.open(newline="", encoding="utf-8") as handle:
                rows = list(csv.DictReader(handle))
        elif suffix == ".parquet":
            rows = _read_parquet(path)
        else:
            raise DataError(f"{path}: unknown file type '{suffix}'; use one of {', '.join(LOCAL_SUFFIXES)}")
    except UnicodeDecodeError:
        raise DataError(f"{path}: not valid UTF-8 text") from None
    if not rows:
        raise DataError(f"{path}: no rows")
    return parse_split(split).apply(rows)


def _read_jsonl(path: Path) -> list[Row]:
    rows: list[Row] = []
    with path.open(encoding="utf-8") as handle:
        for number, line in enumerate(handle, start=1):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
            except json.JSONDecodeError as exc:
                raise DataError(f"{path}:{number}: invalid JSON ({exc.msg})") from None
            if not isinstance(row, dict):
                raise DataError(f"{path}:{number}: each line must be a JSON object")
            rows.append(row)
    return rows


def _read_json(path: Path) -> list[Row]:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as exc:
        raise DataError(f"{path}:{exc.lineno}: invalid JSON ({exc.msg})") from None
    if isinstance(data, dict):  # {"train": [...]} or {"data": [...]}
        lists = [v for v in data.values() if isinstance(v, list)]
        data = lists[0] if len(lists) == 1 else data
    if not isinstance(data, list) or not all(isinstance(r, dict) for r in data):
        raise DataError(f"{path}: expected a JSON array of objects")
    return data


def _read_parquet(path: Path) -> list[Row]:
    try:
        import pyarrow.parquet as pq
    except ImportError:
        raise DataError(
            "reading parquet needs pyarrow (part of the training environment: `just setup`)"
        ) from None
    try:
        rows: list[Row] = pq.read_table(path).to_pylist()
    except Exception as exc:  # pyarrow raises several types for damaged files
        raise DataError(f"{path}: not a readable parquet file ({exc})") from None
    return rows


def read_hub(source: str, subset: str | None, split: str) -> list[Row]:
    """Rows of a hub dataset split (needs network or a warm HF cache)."""
    from datasets import load_dataset

    try:
        dataset = load_dataset(source, subset, split=split)
    except Exception as exc:  # the hub client raises many types; the message is what matters
        raise DataError(
            f"cannot load hub dataset '{source}' ({subset or 'default'}, {split}): {exc}"
        ) from None
    return [dict(row) for row in dataset]
