"""Read a job file into a :class:`JobSpec`, collecting every problem with its file, line and key.

Nothing here raises anything but :class:`SpecError`; its message is what the user sees.
"""

from __future__ import annotations

import difflib
import hashlib
import os
import re
import stat
import tomllib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

from pydantic import BaseModel, ValidationError

from runner.core.rundir import RunDir
from runner.core.secrets import looks_secret
from runner.spec.model import CHARS_PER_TOKEN_LIMIT, JobSpec, NotifyDefaults, NotifySpec
from runner.spec.problems import Problem, SpecError

_SECRET_KEY = re.compile(r"(^|_)(token|api_?key|secret|password|passwd)$", re.IGNORECASE)
_REVISION = ("model", "revision")  # may be a 40-hex git commit pin, which is not a secret
MAX_JOB_FILE_BYTES = 1024 * 1024  # job files are small; anything larger is a wrong path
MAX_NESTING = 8  # tables and arrays inside each other; a valid job file needs 4 at most
_MAX_SHOWN = 60  # longest invalid value echoed in a message
SECRET_HINT = (
    "secrets are never read from job files: export HF_TOKEN (or WANDB_API_KEY) in the environment "
    "that starts tuneq, and delete this key"
)


@dataclass(frozen=True)
class LoadedSpec:
    """A validated spec with the exact text it came from."""

    spec: JobSpec
    text: str
    path: Path

    @property
    def base_dir(self) -> Path:
        """The directory that relative paths in the job file are resolved against."""
        return self.path.parent.resolve()

    @property
    def spec_hash(self) -> str:
        """A hash of the validated settings (comments and key order do not change it)."""
        return spec_hash(self.spec)


def spec_hash(spec: JobSpec) -> str:
    """Stable sha256 of a spec's resolved values."""
    return hashlib.sha256(spec.model_dump_json().encode()).hexdigest()


def read_text(path: Path) -> str:
    """Read a job file as UTF-8 text, turning every way that can fail into a :class:`SpecError`.

    Only a regular file of at most :data:`MAX_JOB_FILE_BYTES` is read (checked before reading, so a
    device such as ``/dev/zero`` or a FIFO is refused at once instead of hanging).
    """
    where = str(path)
    try:
        kind = path.stat().st_mode
        if stat.S_ISDIR(kind):
            raise SpecError(
                [Problem(where, None, None, "is a directory, not a job file", "pass a .toml file")]
            )
        _check_regular(kind, where)
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK)  # never waits for a FIFO's writer
        with os.fdopen(fd, "rb") as handle:
            found = os.fstat(fd)
            _check_regular(found.st_mode, where)  # the path may have been replaced since the stat
            raw = handle.read(MAX_JOB_FILE_BYTES + 1)
    except FileNotFoundError:
        raise SpecError(
            [Problem(where, None, None, "file not found", "check the path (job files live in jobs/)")]
        ) from None
    except OSError as exc:
        raise SpecError([Problem(where, None, None, f"cannot be read: {exc.strerror}", None)]) from None
    if len(raw) > MAX_JOB_FILE_BYTES:
        too_big = f"is over {MAX_JOB_FILE_BYTES:,} bytes, too large for a job file"
        raise SpecError([Problem(where, None, None, too_big, "pass the .toml job file, not its data")])
    if b"\x00" in raw:
        raise SpecError([Problem(where, None, None, "is a binary file, not TOML", "pass a .toml job file")])
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = raw[: exc.start].count(b"\n") + 1
        raise SpecError(
            [Problem(where, line, None, "is not valid UTF-8", "save the file as UTF-8")]
        ) from None
    if not text.strip():
        raise SpecError([Problem(where, None, None, "is empty", "start from jobs/demo-tiny.toml")])
    return text


def _check_regular(mode: int, where: str) -> None:
    if not stat.S_ISREG(mode):
        raise SpecError(
            [
                Problem(
                    where, None, None, "is not a regular file (a device, FIFO or socket)", "pass a .toml file"
                )
            ]
        )


def parse_spec(text: str, where: str) -> JobSpec:
    """Parse and validate job-file text; ``where`` names it in messages."""
    return _parse(text, where, JobSpec)


def parse_notify_defaults(text: str, where: str) -> NotifySpec:
    """The queue's default ``[notify]`` table (``notify.toml``), validated as in a job file."""
    return _parse(text, where, NotifyDefaults).notify


_Model = TypeVar("_Model", bound=BaseModel)


def _parse(text: str, where: str, model: type[_Model]) -> _Model:
    try:
        data = tomllib.loads(text)
    except RecursionError:  # tomllib parses nested arrays and inline tables recursively
        raise SpecError([_too_deep(where, None, None)]) from None
    except tomllib.TOMLDecodeError as exc:
        match = re.search(r"\(at line (\d+), column (\d+)\)", str(exc))
        line = int(match.group(1)) if match else None
        message = re.sub(r"\s*\(at line \d+, column \d+\)", "", str(exc))
        raise SpecError([Problem(where, line, None, f"TOML syntax error: {message}", None)]) from None
    locate = _KeyLocator(text)
    if (deep := _deepest(data)) is not None:  # before anything walks the data recursively
        raise SpecError([_too_deep(where, locate.line(deep), deep)])
    problems = list(_secret_problems(data, where, locate))
    try:
        spec = model.model_validate(data)
    except ValidationError as exc:
        problems.extend(_validation_problems(exc, where, locate))
        raise SpecError(problems) from None
    if isinstance(spec, JobSpec):
        problems.extend(_smoke_prompt_problems(spec, where, locate))
    if problems:
        raise SpecError(problems)
    return spec


def load_spec(path: str | Path) -> LoadedSpec:
    """Read and validate a job file; a ``model.base`` path comes back absolute (:func:`base_location`)."""
    p = Path(path)
    text = read_text(p)
    spec = parse_spec(text, str(p))
    return LoadedSpec(with_model_base(spec, base_location(spec.model.base, p.parent.resolve())), text, p)


def base_location(base: str, base_dir: Path) -> str:
    """``model.base`` as a run must see it: a path made absolute, a relative one taken from ``base_dir``
    (the job file's directory, as for ``data.source``); a built-in (``tuneq:...``) or hub id unchanged.

    It is a path when it starts with ``/``, ``.`` or ``~``, holds a backslash or more than one ``/``, ends
    in ``.gguf``, or exists under ``base_dir``; a hub id is ``owner/name``.
    """
    path = Path(base).expanduser()
    is_path = (
        base.startswith(("/", ".", "~"))
        or "\\" in base
        or base.count("/") > 1
        or base.lower().endswith(".gguf")
        or (base_dir / path).exists()
    )
    if base.startswith("tuneq:") or not is_path:
        return base
    return str(path if path.is_absolute() else (base_dir / path).resolve())


def run_spec(run: RunDir) -> JobSpec:
    """The spec a run directory's pipeline runs: its ``job.toml``, with ``model.base`` as submit resolved it
    (``job.json``'s ``model_base``)."""
    spec = parse_spec(run.job_toml.read_text(encoding="utf-8"), str(run.job_toml))
    return with_model_base(spec, run.read_job_info().get("model_base"))


def with_model_base(spec: JobSpec, base: str | None) -> JobSpec:
    """``spec`` with ``model.base`` set to ``base`` (as resolved at submit and stored in ``job.json``)."""
    if not base or base == spec.model.base:
        return spec
    return spec.model_copy(update={"model": spec.model.model_copy(update={"base": base})})


def key_line(text: str, path: tuple[str, ...]) -> int | None:
    """The line of a key path (or of its nearest enclosing table) in job-file text."""
    return _KeyLocator(text).line(path)


def _deepest(data: dict[str, Any]) -> tuple[str, ...] | None:
    """The first key path nested deeper than :data:`MAX_NESTING`, or ``None`` (a loop, not recursion:
    the data may be thousands of levels deep)."""
    stack: list[tuple[tuple[str, ...], Any]] = [((), data)]
    while stack:
        path, value = stack.pop()
        if len(path) > MAX_NESTING:
            return path
        if isinstance(value, dict):
            stack.extend(((*path, str(k)), v) for k, v in value.items())
        elif isinstance(value, list):
            stack.extend(((*path, str(i)), v) for i, v in enumerate(value))
    return None


def _too_deep(where: str, line: int | None, path: tuple[str, ...] | None) -> Problem:
    key = ".".join(path[:3]) + ".…" if path else None
    return Problem(
        where,
        line,
        key,
        f"tables or arrays nest more than {MAX_NESTING} levels deep",
        "a job file nests at most 4 levels (e.g. smoke.prompts[0].must_contain): see jobs/demo-tiny.toml",
    )


def _walk(data: Any, prefix: tuple[str, ...] = ()) -> Iterator[tuple[tuple[str, ...], Any]]:
    if isinstance(data, dict):
        for key, value in data.items():
            yield (*prefix, key), value
            yield from _walk(value, (*prefix, key))
    elif isinstance(data, list):
        for i, value in enumerate(data):
            yield from _walk(value, (*prefix, str(i)))


def _secret_problems(data: dict[str, Any], where: str, locate: _KeyLocator) -> Iterator[Problem]:
    for path, value in _walk(data):
        key = path[-1]
        looks_secret_key = bool(_SECRET_KEY.search(key)) and not isinstance(value, dict | list)
        looks_secret_value = isinstance(value, str) and looks_secret(value, commit_ok=path == _REVISION)
        if looks_secret_key or looks_secret_value:
            yield Problem(where, locate.line(path), ".".join(path), "looks like a secret", SECRET_HINT)


def _smoke_prompt_problems(spec: JobSpec, where: str, locate: _KeyLocator) -> Iterator[Problem]:
    """Prompts too long for the smoke test's context, whatever the tokenizer (the data stage checks the
    real token count before training)."""
    room = spec.smoke_prompt_tokens
    for i, one in enumerate(spec.smoke.prompts):
        if len(one.prompt) > room * CHARS_PER_TOKEN_LIMIT:
            path = ("smoke", "prompts", str(i), "prompt")
            yield Problem(
                where,
                locate.line(path),
                ".".join(path),
                f"is {len(one.prompt):,} characters, more than the smoke test's room for a prompt "
                f"({room:,} tokens) can hold",
                "shorten the prompt, or raise model.max_seq_length",
            )


def _validation_problems(exc: ValidationError, where: str, locate: _KeyLocator) -> Iterator[Problem]:
    for err in exc.errors():
        path = tuple(str(p) for p in err["loc"])
        key = ".".join(path) or None
        line = locate.line(path)
        kind = err["type"]
        if kind == "extra_forbidden":
            yield Problem(where, line, key, "unknown key", _did_you_mean(path))
        elif kind == "missing":
            yield Problem(where, None, key, "is required", _missing_hint(path))
        else:
            message = err["msg"].removeprefix("Value error, ")
            yield Problem(where, line, key, f"{message}{_shown(err.get('input'))}", None)


def _shown(value: Any) -> str:
    """`` (got VALUE)`` for a short scalar that is no secret (those are never echoed), else nothing."""
    if isinstance(value, dict | list) or value is None:
        return ""
    text = repr(value)
    if looks_secret(text) or "://" in text or len(text) > _MAX_SHOWN:  # a URL may carry a token
        return ""
    return f" (got {text})"


def _missing_hint(path: tuple[str, ...]) -> str:
    if len(path) > 1:
        return f"add `{path[-1]} = ...` under [{'.'.join(path[:-1])}]"
    field = JobSpec.model_fields.get(path[0])
    if field is not None and _is_model(field.annotation):
        return f"add a [{path[0]}] table"
    return f"add `{path[0]} = ...` at the top of the file"


def _is_model(annotation: Any) -> bool:
    return isinstance(annotation, type) and issubclass(annotation, BaseModel)


def _fields_at(path: tuple[str, ...]) -> list[str]:
    """The valid key names of the table that holds ``path``'s last key."""
    model: type[BaseModel] = JobSpec
    for part in path[:-1]:
        if part.isdigit():
            continue
        field = model.model_fields.get(part)
        if field is None:
            return []
        annotation = field.annotation
        inner = getattr(annotation, "__args__", None)
        if inner:  # list[SmokePrompt] and similar
            annotation = next((a for a in inner if _is_model(a)), annotation)
        if not (isinstance(annotation, type) and issubclass(annotation, BaseModel)):
            return []
        model = annotation
    return list(model.model_fields)


def _did_you_mean(path: tuple[str, ...]) -> str:
    valid = _fields_at(path)
    close = difflib.get_close_matches(path[-1], valid, n=1, cutoff=0.6)
    if close:
        return f"did you mean '{close[0]}'?"
    where = f"[{'.'.join(p for p in path[:-1] if not p.isdigit())}]" if len(path) > 1 else "the top level"
    return f"valid keys in {where}: {', '.join(valid)}"


class _KeyLocator:
    """Finds the line of a key path in TOML text (tables, dotted keys, arrays of tables)."""

    _HEADER = re.compile(r"^\s*(\[\[?)\s*([^\]]+?)\s*\]\]?\s*(#.*)?$")
    _KEY = re.compile(r"^\s*([A-Za-z0-9_.\-\"' ]+?)\s*=")

    def __init__(self, text: str) -> None:
        self._lines: dict[tuple[str, ...], int] = {}
        table: tuple[str, ...] = ()
        counters: dict[tuple[str, ...], int] = {}
        for number, line in enumerate(text.splitlines(), start=1):
            header = self._HEADER.match(line)
            if header:
                table = tuple(_unquote(p) for p in header.group(2).split("."))
                if header.group(1) == "[[":
                    index = counters.get(table, -1) + 1
                    counters[table] = index
                    table = (*table, str(index))
                self._lines.setdefault(table, number)
                continue
            key = self._KEY.match(line)
            if key:
                path = (*table, *(_unquote(p) for p in key.group(1).split(".")))
                self._lines.setdefault(path, number)

    def line(self, path: tuple[str, ...]) -> int | None:
        """The line of ``path``, or of the nearest enclosing table that appears in the text."""
        for end in range(len(path), 0, -1):
            if path[:end] in self._lines:
                return self._lines[path[:end]]
        return None


def _unquote(part: str) -> str:
    return part.strip().strip("\"'")
