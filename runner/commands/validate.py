"""``tuneq validate``: everything that can be checked before a GPU is touched.

The schema (every problem at once, with file, line and key), then the data as far as it is reachable
offline: a local file exists and parses, the format's columns exist in every row, the row count, and —
with the tokenizer — how many examples keep a token to learn from after truncation. Hub datasets are
not fetched when the hub is unreachable: they are reported as "not checked (offline)".

The base model's architecture (``config.json``'s ``architectures``) must be one the pinned llama.cpp
converter registers, read from the converter's own source: a model that cannot become a GGUF is
refused here, in a second, not after training. A hub model not in the local cache is "not checked
(offline)".
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import os
import socket
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path

from runner.dataset.build import load_examples
from runner.dataset.read import DataError, check_hub_id, is_local_source, resolve_local
from runner.dataset.templates import (
    Tokenized,
    render_sample,
    system_prompt_problem,
    tokenize_example,
    truncation_warning,
)
from runner.llamacpp import convertible_architectures
from runner.spec import LoadedSpec, Problem, SpecError, load_spec
from runner.spec.load import key_line

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


def base_architecture(base: str, revision: str | None = None) -> tuple[str | None, str]:
    """The base model's ``architectures[0]`` and whether the converter supports it, as a status line.

    Reads only files on disk (a local directory or the hub cache); built-in models are made convertible.
    """
    if base.startswith("tuneq:"):
        return None, "built-in (converts to GGUF)"
    config = Path(base).expanduser() / "config.json"
    if not Path(base).expanduser().exists():
        from huggingface_hub import try_to_load_from_cache

        cached = try_to_load_from_cache(base, "config.json", revision=revision)
        if not isinstance(cached, str):
            return None, "not checked (offline)"
        config = Path(cached)
    try:
        architectures = json.loads(config.read_text(encoding="utf-8")).get("architectures") or []
    except (OSError, json.JSONDecodeError, AttributeError):
        return None, f"not checked ({config} is missing or not a JSON object)"
    if not architectures:
        return None, f"not checked ({config} names no architectures)"
    supported = convertible_architectures()
    if not supported:
        return architectures[0], "not checked (llama.cpp's converter is not installed: run `just setup`)"
    if architectures[0] not in supported:
        return architectures[0], "unsupported"
    return architectures[0], f"{architectures[0]}: llama.cpp's converter supports it"


def check_architecture(loaded: LoadedSpec) -> str:
    """The base model's architecture status; :class:`SpecError` when the converter cannot convert it."""
    model = loaded.spec.model
    arch, status = base_architecture(model.base, model.revision)
    if status == "unsupported":
        raise SpecError(
            [
                Problem(
                    str(loaded.path),
                    key_line(loaded.text, ("model", "base")),
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
    if base.startswith("tuneq:"):
        return None
    folder = Path(base).expanduser()
    for name in ("chat_template.jinja", "tokenizer_config.json"):
        path: Path | None = folder / name
        if not folder.exists():
            from huggingface_hub import try_to_load_from_cache

            cached = try_to_load_from_cache(base, name, revision=revision)
            path = Path(cached) if isinstance(cached, str) else None
        if path is None or not path.is_file():
            continue
        text = path.read_text(encoding="utf-8", errors="replace")
        if name.endswith(".jinja"):
            return text
        with contextlib.suppress(json.JSONDecodeError, AttributeError):
            template = json.loads(text).get("chat_template")
            if isinstance(template, list):  # named templates: the default one
                template = next((t.get("template") for t in template if t.get("name") == "default"), None)
            return template if isinstance(template, str) else None
    return None


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


def validate_file(path: str | Path) -> tuple[LoadedSpec, DataCheck]:
    """Schema, model architecture and data checks for one job file; :class:`SpecError` lists problems."""
    loaded = load_spec(path)
    problems: list[Problem] = []
    try:
        check_architecture(loaded)
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


def check_labels_apart(path: Path, limit: int) -> LabelCheck:
    """:func:`check_labels` of the job file at ``path`` in a child process, so that the tokenizer's
    libraries (transformers, tokenizers) never load into the CLI or the TUI; ValueError with the
    child's one-line reason when it cannot."""
    child = subprocess.run(
        [sys.executable, "-m", "runner.commands.validate", str(path), str(limit)],
        capture_output=True,
        text=True,
    )
    if child.returncode != 0:
        lines = child.stderr.strip().splitlines()
        raise ValueError(lines[-1] if lines else f"exit status {child.returncode}")
    return LabelCheck(**json.loads(child.stdout))


def _labels_main(path: str, limit: str) -> int:
    """The child of :func:`check_labels_apart`: the label check as JSON on stdout."""
    try:
        labels = check_labels(load_spec(Path(path)), int(limit))
    except (SpecError, DataError, ImportError, OSError, ValueError) as exc:
        print(str(exc).splitlines()[0] if str(exc) else type(exc).__name__, file=sys.stderr)
        return 2
    print(json.dumps(dataclasses.asdict(labels)))
    return 0


if __name__ == "__main__":
    sys.exit(_labels_main(*sys.argv[1:]))
