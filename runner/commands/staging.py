"""Making a job's run directory at submit (or ``tuneq run``) time: the spec text, job facts and a frozen copy
of its local data file (the layout is :class:`runner.core.rundir.RunDir`'s)."""

from __future__ import annotations

import contextlib
import errno
import filecmp
import json
import secrets
import shutil
import time
from pathlib import Path

from runner.core.atomic import write_atomic
from runner.core.rundir import RunDir
from runner.core.secrets import redact, write_redacted
from runner.dataset.read import is_local_source, resolve_local
from runner.spec.load import LoadedSpec


class RunDirConflict(ValueError):
    """An existing run directory holds another job: it is never adopted (one-line message)."""


def prepare_run_dir(loaded: LoadedSpec, root: Path, job_id: str) -> RunDir:
    """The run directory of ``tuneq run``: created with the spec text, job facts and a copy of a local data
    file; an existing one is reused (resume) only if it holds the same spec and data, else
    :class:`RunDirConflict`."""
    run = RunDir(root)
    if run.job_json.exists():
        if not _holds(run, loaded):
            raise RunDirConflict(
                f"run directory {root} holds another job (its job file or data differ from "
                f"{loaded.path}): pass a new --run-dir, or delete {root} to start over"
            )
        return run
    root.mkdir(parents=True, exist_ok=True)
    _write_inputs(run, loaded)
    _write_job_info(run, loaded, job_id)
    return run


def stage_run_dir(loaded: LoadedSpec, runs: Path) -> Path:
    """A new private directory under ``runs`` holding the spec text and a copy of the local data file,
    made before the job has an id (outside the queue's transaction); :func:`adopt_staged` names it."""
    runs.mkdir(parents=True, exist_ok=True)
    _remove_abandoned(runs)
    staged = runs / f"{STAGING_PREFIX}{secrets.token_hex(8)}"
    staged.mkdir()  # the usual permissions (a container may read it), unlike mkdtemp's 0700
    try:
        _write_inputs(RunDir(staged), loaded)
    except BaseException:
        shutil.rmtree(staged, ignore_errors=True)
        raise
    return staged


def adopt_staged(staged: Path, loaded: LoadedSpec, job_id: int) -> RunDir:
    """Give a staged directory to job ``job_id``: its facts, then the name ``<id>`` beside it, or
    ``<id>.<n>`` where a directory of that name is left by someone else (a submit killed before its job
    was committed, an earlier queue database). An existing directory is never adopted."""
    _write_job_info(RunDir(staged), loaded, str(job_id))
    root, n = staged.parent / str(job_id), 1
    while True:
        try:
            staged.rename(root)  # atomic; fails on any existing entry but an empty directory
        except OSError as exc:
            if exc.errno not in (errno.EEXIST, errno.ENOTEMPTY, errno.ENOTDIR, errno.EISDIR):
                raise
            n += 1
            root = staged.parent / f"{job_id}.{n}"
            continue
        return RunDir(root)


def replace_inputs(run: RunDir, loaded: LoadedSpec) -> None:
    """Give an existing run directory (of a job not running) an edited job file: its spec text, job facts
    and data copy. Where the data differs from the copy it held, the data stage's marker and the
    checkpoints, made from the old rows, are removed so that everything runs again."""
    info = run.read_job_info()
    if not same_data(run, loaded):
        run.stage_marker("data").unlink(missing_ok=True)
        shutil.rmtree(run.checkpoints, ignore_errors=True)
        if (old_copy := info.get("data_path")) is not None:
            (run.root / old_copy).unlink(missing_ok=True)
    _write_inputs(run, loaded)
    _write_job_info(run, loaded, str(info["job"]))


STAGING_PREFIX = ".submit-"
_ABANDONED_S = 24 * 3600  # a staging directory this old belongs to a submit that died


def _remove_abandoned(runs: Path) -> None:
    cutoff = time.time() - _ABANDONED_S
    for staged in runs.glob(STAGING_PREFIX + "*"):
        with contextlib.suppress(OSError):
            if staged.stat().st_mtime < cutoff:
                shutil.rmtree(staged)


def _local_data(loaded: LoadedSpec) -> Path | None:
    """The job's local data file, if its source is one."""
    source = loaded.spec.data.source
    return resolve_local(source, loaded.base_dir) if is_local_source(source, loaded.base_dir) else None


def _write_inputs(run: RunDir, loaded: LoadedSpec) -> None:
    """Write the spec text and copy a local data file: a copy, never a link, so the job's input is
    frozen now, whatever happens to the user's file later."""
    run.job_toml.write_text(loaded.text, encoding="utf-8")
    if (src := _local_data(loaded)) is not None:
        run.input_dir.mkdir(exist_ok=True)
        if (scrubbed := _scrubbed(src)) is not None:
            write_redacted(run.input_dir / src.name, scrubbed)
        else:
            shutil.copy2(src, run.input_dir / src.name)


def _scrubbed(src: Path) -> str | None:
    """A text data file's content with secrets redacted, if it holds any; ``None``: copy it as it is (a
    binary file's rows are redacted when they are read)."""
    try:
        text = src.read_bytes().decode("utf-8")
    except UnicodeDecodeError:
        return None
    return scrubbed if (scrubbed := redact(text)) != text else None


def _write_job_info(run: RunDir, loaded: LoadedSpec, job_id: str) -> None:
    src = _local_data(loaded)
    data_path = str((run.input_dir / src.name).relative_to(run.root)) if src is not None else None
    info = {
        "job": job_id,
        "name": loaded.spec.name,
        "spec_hash": loaded.spec_hash,
        "source_file": str(loaded.path.resolve()),
        "data_path": data_path,
        "model_base": loaded.spec.model.base,  # a local path made absolute: the run does not see the job file
    }
    write_atomic(run.job_json, json.dumps(info, indent=2))


def _holds(run: RunDir, loaded: LoadedSpec) -> bool:
    """Whether an existing run directory was made from the same spec and the same data."""
    return run.read_job_info().get("spec_hash") == loaded.spec_hash and same_data(run, loaded)


def same_data(run: RunDir, loaded: LoadedSpec) -> bool:
    """Whether a run directory's data copy holds what the job file's data source holds now."""
    src, copy = _local_data(loaded), run.read_job_info().get("data_path")
    if src is None or copy is None:
        return src is None and copy is None
    if not (run.root / copy).is_file():
        return False
    if (scrubbed := _scrubbed(src)) is not None:
        return (run.root / copy).read_text(encoding="utf-8") == scrubbed
    return filecmp.cmp(src, run.root / copy, shallow=False)
