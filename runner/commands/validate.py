"""``tuneq validate``: everything that can be checked before a GPU is touched.

The schema (every problem at once, with file, line and key), then the data as far as it is reachable
offline: a local file exists and parses (a CSV row with more or fewer fields than its header is named),
the format's columns exist in every row, eval rows are not training rows, the row counts and how the eval
rows are chosen; with ``--show-sample`` and the tokenizer, how many examples keep a token to learn from
after truncation. Hub datasets are not fetched when the hub is unreachable: they are reported as "not
checked (offline)".

The base model (``model.base``, a local path already made absolute from the job file's directory) must be
trainable: a built-in, a hub id, or a directory with ``config.json`` (a GGUF is refused, with the recipe
to get a checkpoint). Its architecture (``config.json``'s ``architectures``) must be one the pinned
llama.cpp converter registers, read from the converter's own source. With style ``chat`` its chat template
must exist and render the first rows consistently (checked in a child process: transformers never loads
into the CLI). Files not on disk (a hub model not in the cache) are "not checked (offline)".
"""

from __future__ import annotations

import dataclasses
import json
import os
import socket
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from runner.dataset.build import load_examples
from runner.dataset.read import DataError, check_hub_id, is_local_source, resolve_local
from runner.dataset.templates import (
    Tokenized,
    render_sample,
    render_segments,
    system_prompt_problem,
    tokenize_example,
    truncation_warning,
)
from runner.llamacpp.converter import convertible_architectures
from runner.models.resolve import base_files, base_problem, is_builtin
from runner.spec import LoadedSpec, Problem, SpecError, load_spec
from runner.spec.load import key_line

HUB_HOST = ("huggingface.co", 443)
TEMPLATE_ROWS = 16  # examples rendered through a chat template by every validate


@dataclass
class DataCheck:
    """What validation learned about a job's data."""

    status: str  # "checked" | "not checked (offline)"
    train_rows: int | None = None
    eval_rows: int | None = None
    format: str | None = None
    eval_from: str | None = None  # how the eval rows are chosen
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
        key = exc.key or ("data.columns" if "column" in str(exc) else "data.source")
        hint = "relative paths are taken from the job file's directory" if "not found" in str(exc) else None
        line = key_line(loaded.text, tuple(key.split(".")))
        raise SpecError([Problem(where, line, key, str(exc), hint)]) from None
    check = DataCheck(
        "checked", len(examples.train), len(examples.eval), examples.format, eval_from=examples.eval_from
    )
    if local:
        check.notes.append(f"source {resolve_local(data.source, loaded.base_dir)}")
    return check


def base_architecture(base: str, revision: str | None = None) -> tuple[str | None, str]:
    """The base model's ``architectures[0]`` and whether the converter supports it, as a status line.

    Reads only files on disk (:func:`runner.models.resolve.base_files`); built-in models are made convertible.
    """
    if is_builtin(base):
        return None, "built-in (converts to GGUF)"
    folder = base_files(base, revision)
    if folder is None:
        return None, "not checked (offline)"
    config = folder / "config.json"
    try:
        architectures = json.loads(config.read_text(encoding="utf-8")).get("architectures") or []
    except (OSError, UnicodeDecodeError, json.JSONDecodeError, AttributeError):
        return None, f"not checked ({config} is not a JSON object)"
    if not architectures:
        return None, f"not checked ({config} names no architectures)"
    supported = convertible_architectures()
    if not supported:
        return architectures[0], "not checked (llama.cpp's converter is not installed: run `just setup`)"
    if architectures[0] not in supported:
        return architectures[0], "unsupported"
    return architectures[0], f"{architectures[0]}: llama.cpp's converter supports it"


def check_model(loaded: LoadedSpec) -> str:
    """The base model's architecture status; :class:`SpecError` when the base cannot be trained (a missing
    path, a GGUF, a folder without config.json) or the converter cannot convert it."""
    model = loaded.spec.model
    line = key_line(loaded.text, ("model", "base"))
    if (why := base_problem(model.base)) is not None:
        raise SpecError([Problem(str(loaded.path), line, "model.base", why)])
    arch, status = base_architecture(model.base, model.revision)
    if status == "unsupported":
        raise SpecError(
            [
                Problem(
                    str(loaded.path),
                    line,
                    "model.base",
                    f"architecture {arch} cannot be converted to GGUF by the pinned llama.cpp converter "
                    f"({len(convertible_architectures())} supported, e.g. LlamaForCausalLM, "
                    "Qwen2ForCausalLM): pick a base model of a supported architecture",
                )
            ]
        )
    return status


def base_chat_template(base: str, revision: str | None = None) -> str | None:
    """The base model's own chat template from its files on disk (None: not on disk, or none).

    Built-in models are left out: all of them have a system role.
    """
    folder = None if base.startswith("tuneq:") else base_files(base, revision)
    return None if folder is None else chat_template_text(folder)


def check_system_prompt(loaded: LoadedSpec) -> None:
    """:class:`SpecError` when ``template.system`` cannot reach the model through its template."""
    spec = loaded.spec
    if not spec.template.system:
        return
    chat_template = (
        base_chat_template(spec.model.base, spec.model.revision) if spec.template.style == "chat" else None
    )
    try:
        problem = system_prompt_problem(spec.template, chat_template)
    except ImportError:  # the core install has no Jinja: the data stage checks it again
        return
    if problem:
        raise SpecError(
            [
                Problem(
                    str(loaded.path),
                    key_line(loaded.text, ("template", "system")),
                    "template.system",
                    problem,
                )
            ]
        )


def chat_template_text(folder: Path) -> str | None:
    """The chat template in the model files of ``folder`` (``chat_template.jinja``, ``chat_template.json``
    or ``tokenizer_config.json``, as transformers saves them; a named set gives its ``default``)."""
    jinja = folder / "chat_template.jinja"
    if jinja.is_file():
        return jinja.read_text(encoding="utf-8")
    for name in ("chat_template.json", "tokenizer_config.json"):
        try:
            found = json.loads((folder / name).read_text(encoding="utf-8")).get("chat_template")
        except (OSError, UnicodeDecodeError, json.JSONDecodeError, AttributeError):
            continue
        if isinstance(found, list):
            found = next(
                (t.get("template") for t in found if isinstance(t, dict) and t.get("name") == "default"), None
            )
        if isinstance(found, str) and found:
            return found
    return None


def check_template(loaded: LoadedSpec) -> None:
    """Style ``chat`` renders with the base model's own chat template: it must have one, and render the
    first :data:`TEMPLATE_ROWS` examples consistently (checked in a child process with transformers' own
    renderer, no tokenizer loaded: about 2 s); :class:`SpecError` on ``template.style`` otherwise. Not
    checked when the model's files are not on disk, or the training stack is not installed."""
    spec = loaded.spec
    folder = base_files(spec.model.base, spec.model.revision)
    if spec.template.style != "chat" or folder is None:
        return
    line = key_line(loaded.text, ("template", "style"))
    if chat_template_text(folder) is None:
        why = (
            f"style 'chat' renders examples with the base model's chat template, and {folder} has none (a "
            "base model, not an instruct one): use style 'alpaca', 'r1' or 'custom', or an instruct model"
        )
        raise SpecError([Problem(str(loaded.path), line, "template.style", why)])
    try:
        _run_child("template", str(loaded.path))
    except TrainingStackMissing:
        return
    except ValueError as exc:
        raise SpecError([Problem(str(loaded.path), line, "template.style", str(exc))]) from None


class _TemplateRenderer:
    """The two things :func:`render_segments` asks of a tokenizer for style ``chat`` (its chat template and
    ``apply_chat_template``), from the model's files: transformers' own Jinja renderer with the special
    tokens its tokenizer would pass, without loading the tokenizer."""

    def __init__(self, folder: Path) -> None:
        self.chat_template = chat_template_text(folder)
        self.special: dict[str, str] = {}
        for name in ("special_tokens_map.json", "tokenizer_config.json"):
            try:
                config = json.loads((folder / name).read_text(encoding="utf-8"))
            except (OSError, UnicodeDecodeError, json.JSONDecodeError):
                continue
            for key, value in config.items() if isinstance(config, dict) else ():
                token = value.get("content") if isinstance(value, dict) else value
                if key.endswith("_token") and isinstance(token, str):
                    self.special.setdefault(key, token)

    def apply_chat_template(
        self,
        conversation: list[dict[str, str]],
        *,
        chat_template: str,
        tokenize: bool,
        add_generation_prompt: bool,
    ) -> str:
        """The conversation rendered as text (``tokenize`` must be False)."""
        from transformers.utils.chat_template_utils import render_jinja_template

        assert not tokenize
        render: Any = render_jinja_template  # special tokens go to the template as keyword arguments
        rendered = render(
            [conversation],
            chat_template=chat_template,
            add_generation_prompt=add_generation_prompt,
            **self.special,
        )[0]
        return str(rendered[0])


def render_with_template(loaded: LoadedSpec, rows: int) -> None:
    """Render the first ``rows`` training examples through the base model's chat template (the child of
    :func:`check_template`); :class:`DataError` naming the row when one renders inconsistently."""
    spec = loaded.spec
    folder = base_files(spec.model.base, spec.model.revision)
    if folder is None:
        return
    renderer = _TemplateRenderer(folder)
    for example in load_examples(spec.data, spec.template, loaded.base_dir, None, spec.train.seed).train[
        :rows
    ]:
        try:
            render_segments(example, spec.template, renderer)
        except DataError as exc:
            raise DataError(f"row {example.row} of {spec.data.source}: {exc}") from None


def validate_file(path: str | Path) -> tuple[LoadedSpec, DataCheck]:
    """Schema, model, data and chat-template checks for one job file; :class:`SpecError` lists problems."""
    loaded = load_spec(path)
    problems: list[Problem] = []
    try:
        check_model(loaded)
    except SpecError as exc:
        problems += exc.problems
    try:
        check_system_prompt(loaded)
    except SpecError as exc:
        problems += exc.problems
    try:
        data = check_data(loaded)
    except SpecError as exc:
        problems += exc.problems
    if not problems and data.status == "checked":  # rendering reads the rows
        try:
            check_template(loaded)
        except SpecError as exc:
            problems += exc.problems
    if problems:
        raise SpecError(problems)
    return loaded, data


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


class TrainingStackMissing(ValueError):
    """The tokenizer's libraries are not installed (the CLI-only install): nothing could be rendered."""


def check_labels_apart(path: Path, limit: int) -> LabelCheck:
    """:func:`check_labels` of the job file at ``path`` in a child process, so that the tokenizer's
    libraries (transformers, tokenizers) never load into the CLI or the TUI; ValueError with the
    child's one-line reason when it cannot (:class:`TrainingStackMissing` when they are not installed)."""
    return LabelCheck(**json.loads(_run_child("labels", str(path), str(limit))))


def _run_child(*args: str) -> str:
    """Run this module's ``_child_main`` with ``args``; its stdout, or ValueError with its one-line reason."""
    child = subprocess.run(
        [sys.executable, "-m", "runner.commands.validate", *args], capture_output=True, text=True
    )
    if child.returncode != 0:
        lines = child.stderr.strip().splitlines()
        reason = lines[-1] if lines else f"exit status {child.returncode}"
        raise TrainingStackMissing(reason) if child.returncode == _NO_STACK else ValueError(reason)
    return child.stdout


_NO_STACK = 3  # the child's exit status when transformers cannot be imported


def _child_main(mode: str, path: str, limit: str = "0") -> int:
    """The child of :func:`check_labels_apart` (the label check as JSON on stdout) and of
    :func:`check_template` (the template rendering)."""
    try:
        loaded = load_spec(Path(path))
        if mode == "template":
            render_with_template(loaded, TEMPLATE_ROWS)
        else:
            print(json.dumps(dataclasses.asdict(check_labels(loaded, int(limit)))))
    except ImportError as exc:
        print(f"not checked: the training stack is not installed ({exc})", file=sys.stderr)
        return _NO_STACK
    except (SpecError, DataError, OSError, ValueError) as exc:
        print(str(exc).splitlines()[0] if str(exc) else type(exc).__name__, file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(_child_main(*sys.argv[1:]))
