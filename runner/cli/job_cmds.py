"""``tuneq validate`` and ``tuneq run``: check a job file; run one job in the foreground."""

from __future__ import annotations

import argparse
import json
import sys
import time
from dataclasses import asdict
from datetime import datetime
from pathlib import Path
from typing import Any

from runner.backends.base import Launch
from runner.backends.local import LocalBackend
from runner.backends.supervise import supervise
from runner.cli.exitcodes import EXIT_FAILED, EXIT_INTERRUPTED, EXIT_OK, EXIT_USAGE
from runner.commands import validation_rows
from runner.commands.staging import RunDirConflict, prepare_run_dir
from runner.commands.validate import DataCheck, check_labels_apart, validate_file
from runner.core.disksize import describe as describe_disk
from runner.core.events import Event, EventTail, JobEnd, format_event
from runner.core.rundir import EXIT_BUSY, RunDir, RunDirBusy
from runner.core.tail import file_end
from runner.core.tested import tested_gguf
from runner.models.vram import estimate, model_config, model_shape
from runner.spec import LoadedSpec, SpecError
from runner.spec.model import file_stem
from runner.store import JSON_VERSION


def register(sub: Any) -> None:
    """Add ``validate`` and ``run``."""
    p = sub.add_parser(
        "validate",
        help="check job files without touching a GPU",
        description="Check job files as submit does, reporting every problem of every file: schema, data, "
        "eval rows, base model and chat template, plus GPU memory and disk estimates. Example: "
        "`tuneq validate jobs/*.toml`, or `tuneq validate jobs/x.toml --show-sample` to see a rendered row.",
    )
    p.add_argument("files", nargs="+", metavar="FILE")
    how = p.add_mutually_exclusive_group()
    how.add_argument(
        "--show-sample",
        action="store_true",
        help="render one training example with the model's tokenizer and count unusable ones",
    )
    how.add_argument("--json", action="store_true", help="machine-readable output (docs/cli-json.md)")
    p.set_defaults(handler=cmd_validate)
    p = sub.add_parser("run", help="run one job in the foreground (no queue)")
    p.add_argument("file", metavar="FILE")
    p.add_argument(
        "--run-dir",
        type=Path,
        help="run directory (default: runs/<name>-<time>); an existing one is resumed if it holds the same "
        "job file and data, else refused",
    )
    p.set_defaults(handler=cmd_run)


def _rows(loaded: LoadedSpec, data: DataCheck) -> list[tuple[str, str]]:
    return [*validation_rows(loaded, data), ("memory", _memory_line(loaded)), ("disk", _disk_line(loaded))]


def _summary(loaded: LoadedSpec, data: DataCheck) -> str:
    rows = _rows(loaded, data)
    return "\n".join([f"{loaded.path}: valid", *(f"  {key:<9} {value}" for key, value in rows)])


def _memory_line(loaded: LoadedSpec) -> str:
    s = loaded.spec
    config = model_config(s.model.base, s.model.revision)
    if config is None:
        return "not estimated (the model's config.json is not on disk)"
    return estimate(config, s).describe(s.train.per_device_train_batch_size, s.model.max_seq_length)


def _disk_line(loaded: LoadedSpec) -> str:
    s = loaded.spec
    config = model_config(s.model.base, s.model.revision)
    if config is None:
        return "not estimated (the model's config.json is not on disk)"
    return describe_disk(model_shape(config), s.export.gguf)


def cmd_validate(args: argparse.Namespace) -> int:
    """Validate each file; print a summary or every problem. Exit 2 if any file is invalid."""
    if args.json:
        return _validate_json(args.files)
    code = EXIT_OK
    for file in args.files:
        try:
            loaded, data = validate_file(file)
        except SpecError as exc:
            print(exc, file=sys.stderr)
            code = EXIT_USAGE
            continue
        print(_summary(loaded, data))
        if args.show_sample and data.status == "checked":
            code = max(code, _show_sample(loaded))
        elif data.status == "checked":
            print(
                "  lengths   not counted: --show-sample tokenizes the examples and names any longer than max_seq_length"
            )
    return code


def _validate_json(files: list[str]) -> int:
    """``validate --json``: per file, valid with its summary rows, or its problems."""
    results: list[dict[str, Any]] = []
    for file in files:
        try:
            loaded, data = validate_file(file)
        except SpecError as exc:
            results.append({"path": file, "valid": False, "problems": [asdict(p) for p in exc.problems]})
            continue
        summary = dict(_rows(loaded, data))
        results.append({"path": file, "valid": True, "summary": summary, "problems": []})
    print(json.dumps({"v": JSON_VERSION, "files": results}, indent=2, ensure_ascii=False))
    return EXIT_OK if all(r["valid"] for r in results) else EXIT_USAGE


def _show_sample(loaded: LoadedSpec) -> int:
    try:
        labels = check_labels_apart(loaded.path, limit=2000)
    except ValueError as exc:
        print(f"{loaded.path}: cannot render a sample: {exc}", file=sys.stderr)
        return EXIT_USAGE
    print(labels.sample, end="")
    print(
        f"  {labels.examples} examples tokenized: {labels.truncated} truncated to "
        f"max_seq_length, {labels.no_target} with nothing to learn"
    )
    if labels.truncation:
        print(f"{loaded.path}: warning: {labels.truncation}", file=sys.stderr)
    if labels.no_target == labels.examples:
        print(
            f"{loaded.path}: model.max_seq_length: every example loses its answer to truncation "
            "(all labels would be -100)\n    hint: raise model.max_seq_length",
            file=sys.stderr,
        )
        return EXIT_USAGE
    return EXIT_OK


def cmd_run(args: argparse.Namespace) -> int:
    """Validate, create the run directory, run the pipeline as a child, print its events as they come."""
    try:
        loaded, _ = validate_file(args.file)
    except SpecError as exc:
        print(exc, file=sys.stderr)
        return EXIT_USAGE
    stamp = datetime.now().strftime("%Y%m%d-%H%M%S")
    root = args.run_dir or Path("runs") / f"{file_stem(loaded.spec.name)}-{stamp}"
    try:
        with RunDir(root.resolve()).locked():  # two runs given one directory: the second stops here...
            run = prepare_run_dir(loaded, root.resolve(), root.name)
    except (RunDirConflict, RunDirBusy) as exc:
        print(f"tuneq run: {exc}", file=sys.stderr)
        return EXIT_USAGE
    print(f"run directory: {run.root}")
    if note := queue_only_settings(loaded):
        print(note, file=sys.stderr)
    return follow_local_run(run, loaded)


def queue_only_settings(loaded: LoadedSpec) -> str | None:
    """The line saying which of the job file's ``[run]`` settings ``tuneq run`` leaves to the queue: it
    runs the pipeline in a local process that sees this machine's GPUs, whatever ``backend`` and ``gpus``
    say. ``None`` when the file sets neither (or ``backend = "local"``, which is what it does)."""
    run = loaded.spec.run
    unused = [f'backend = "{run.backend}"'] if run.backend != "local" else []
    if "gpus" in run.model_fields_set:
        unused.append(f"gpus = {run.gpus}")
    if not unused:
        return None
    return (
        f"tuneq run: {loaded.path}: [run] {', '.join(unused)} not used: `tuneq run` runs a local process "
        "on the GPUs CUDA_VISIBLE_DEVICES shows; the queue honours them (`tuneq submit`)"
    )


def follow_local_run(run: RunDir, loaded: LoadedSpec) -> int:
    """Run the pipeline through the local backend and echo its events until it ends."""
    pipeline = supervise(LocalBackend(), Launch(run.root.name, run.root, loaded.spec))  # secrets inherited
    tail = EventTail(run.events, offset=file_end(run.events))
    last: Event | None = None
    try:
        while True:
            outcome = pipeline.poll()
            for event in tail.read_new():  # read after polling: an ended pipeline's last events are there
                print(format_event(event), flush=True)
                last = event
            if outcome is not None:
                break
            time.sleep(0.2)
    except KeyboardInterrupt:
        print("stopping (a checkpoint is saved if training was running)...", file=sys.stderr)
        pipeline.stop(grace_s=30)
        return EXIT_INTERRUPTED
    if outcome.exit_code == EXIT_BUSY:  # ...or here, once its pipeline found the directory taken
        print(f"tuneq run: {RunDirBusy(run.root, run.lock_holder())}", file=sys.stderr)
        return EXIT_USAGE
    if isinstance(last, JobEnd) and last.ok:
        tested = tested_gguf(last)
        print(f"report: {run.report}")
        if tested:
            print(f"tested {tested.label}: {run.root / tested.path}")
        return EXIT_OK
    print(f"job failed: see {run.log} and {run.report}", file=sys.stderr)
    return EXIT_FAILED
