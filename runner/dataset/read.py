"""Read rows from a local json / jsonl / csv / parquet file or a hub dataset, with split slicing.

Local files are read with the standard library (parquet with pyarrow), so ``tuneq validate`` can check
them without the training stack. Every failure is a :class:`DataError` with a message for the user.
"""

from __future__ import annotations

import csv
import io
import json
import re
import shlex
from dataclasses import dataclass
from pathlib import Path
from typing import Any

Row = dict[str, Any]
LOCAL_SUFFIXES = (".json", ".jsonl", ".csv", ".parquet")
# Suffixes that mark a file name, never a hub id (hub ids may hold dots: "teknium/OpenHermes-2.5").
FILE_SUFFIXES = (*LOCAL_SUFFIXES, ".txt", ".tsv", ".ndjson", ".xlsx", ".xls", ".arrow", ".gz", ".zip", ".md")
_HUB_ID = re.compile(r"^[A-Za-z0-9][\w.-]*(/[A-Za-z0-9][\w.-]*)?$")
_SPLIT = re.compile(r"^(?P<name>[A-Za-z0-9_.-]+)(\[(?P<start>-?\d*%?)?:(?P<stop>-?\d*%?)?\])?$")


class DataError(Exception):
    """A problem with a job's data, phrased for the user; ``key`` is the job-file key to fix, where known."""

    def __init__(self, message: str, key: str | None = None) -> None:
        super().__init__(message)
        self.key = key


@dataclass(frozen=True)
class SplitSlice:
    """``train[0:500]`` or ``train[:10%]`` parsed."""

    name: str
    start: str | None = None
    stop: str | None = None

    def apply(self, rows: list[Row]) -> list[Row]:
        """Slice a list of rows like the hub's split syntax does."""
        return [rows[i] for i in self.indices(len(rows))]

    def indices(self, n: int) -> range:
        """The 0-based indices this slice takes of ``n`` rows."""
        return range(*slice(_bound(self.start, n), _bound(self.stop, n)).indices(n))


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


def is_local_source(source: str, base_dir: Path) -> bool:
    """Whether ``data.source`` names a local file rather than a hub id.

    It does when it exists, starts with ``/``, ``.`` or ``~``, holds a backslash or more than one
    ``/``, or ends with a file suffix (``.txt`` too: a missing ``data/alpaca.txt`` is a missing file,
    not a hub id). A hub id is ``owner/name`` (or ``name``) without such a suffix.
    """
    return (
        source.startswith(("/", ".", "~"))
        or "\\" in source
        or source.count("/") > 1
        or Path(source).suffix.lower() in FILE_SUFFIXES
        or resolve_local(source, base_dir).exists()
    )


def is_hub_id(text: str) -> bool:
    """Whether ``text`` is shaped like a hub repository id: ``owner/name`` or ``name``."""
    return bool(_HUB_ID.match(text)) and ".." not in text and not text.endswith(".")


def check_hub_id(source: str) -> None:
    """Raise :class:`DataError` when a non-local ``data.source`` is not shaped like a hub id."""
    if not is_hub_id(source):
        raise DataError(
            f"data source '{source}' is neither an existing file nor a hub id: name a local "
            f"{'/'.join(LOCAL_SUFFIXES)} file (relative to the job file) or a hub dataset as 'owner/name'"
        )


def resolve_local(source: str, base_dir: Path) -> Path:
    """The absolute path of a local source, relative paths taken from the job file's directory."""
    path = Path(source).expanduser()
    if path.is_absolute():
        return path
    try:
        return (base_dir / path).resolve()
    except (RuntimeError, OSError):  # a loop of symbolic links (RuntimeError before 3.13): read_local says so
        return base_dir / path


def read_local(path: Path, split: str = "train") -> list[Row]:
    """All rows of a local file, sliced by ``split``'s range (its name is ignored for one file)."""
    if not path.exists():
        if path.is_symlink():
            raise DataError(
                f"data source {path} is a symbolic link to nothing (or a loop of links): point it at the data file"
            )
        raise DataError(f"data file {path} not found")
    if path.is_dir():
        raise DataError(f"data source {path} is a directory; name a .jsonl/.json/.csv/.parquet file")
    if not path.is_file():  # checked before opening: reading a FIFO or a device never ends
        raise DataError(f"data source {path} is not a regular file (a device, FIFO or socket)")
    suffix = path.suffix.lower()
    if suffix == ".jsonl":
        rows = _read_jsonl(path)
    elif suffix == ".json":
        rows = _read_json(path)
    elif suffix == ".csv":
        rows = _read_csv(path)
    elif suffix == ".parquet":
        rows = _read_parquet(path)
    else:
        raise DataError(
            f"{path}: unknown file type '{suffix or '(none)'}'; supported: {', '.join(LOCAL_SUFFIXES)} "
            "(convert the file, or rename it if it already is one of these)"
        )
    if not rows:
        raise DataError(f"{path}: no rows")
    return parse_split(split).apply(rows)


def _read_text(path: Path) -> str:
    """A text file's content without a UTF-8 byte-order mark (Excel's "CSV UTF-8" writes one).

    Text that is not UTF-8 is a :class:`DataError` naming the line, the byte and how to convert it.
    """
    raw = path.read_bytes()
    try:
        return raw.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        line = raw[: exc.start].count(b"\n") + 1
        converted = path.with_name(f"{path.stem}.utf8{path.suffix}")
        raise DataError(
            f"{path}:{line}: not valid UTF-8 text (byte {exc.start}: 0x{raw[exc.start]:02x}); if it is "
            f"Latin-1, convert it: iconv -f latin1 -t utf-8 {shlex.quote(str(path))} > "
            f"{shlex.quote(str(converted))}"
        ) from None


def _read_csv(path: Path) -> list[Row]:
    """Rows of a CSV file with a header; a row with more or fewer fields than the header (most often an
    unquoted comma) is a :class:`DataError` naming its line, never cut or padded silently."""
    reader = csv.reader(io.StringIO(_read_text(path), newline=""))
    header = next(reader, [])
    rows: list[Row] = []
    for fields in reader:
        if not fields:  # a blank line
            continue
        if len(fields) != len(header):
            raise DataError(
                f"{path}:{reader.line_num}: {len(fields)} fields where the header has {len(header)} "
                f"({', '.join(header)}): put a field that holds a comma in double quotes "
                '("like, this"), as spreadsheets export it'
            )
        rows.append(dict(zip(header, fields, strict=True)))
    return rows


def _read_jsonl(path: Path) -> list[Row]:
    rows: list[Row] = []
    for number, line in enumerate(_read_text(path).split("\n"), start=1):
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
        data = json.loads(_read_text(path))
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
