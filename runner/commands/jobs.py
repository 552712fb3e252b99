"""What users can ask of the queue, as plain functions: the CLI and the TUI both call these.

They validate, write intents to the store and return the updated :class:`Job`; they never touch
processes (the worker owns those). Errors are :class:`SpecError` (a job file), :class:`JobError` (an
unknown id or a wrong state), :class:`StoreError` (the database) and :class:`StateDirError` (the state
directory or its ``runs/`` is not a directory); each message is for the user.
"""

from __future__ import annotations

import shutil
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from functools import partial
from pathlib import Path

from runner.cluster.address import ClusterInfo, read_cluster_info, too_many_gpus
from runner.commands.staging import adopt_staged, replace_inputs, same_data, stage_run_dir
from runner.commands.validate import DataCheck, base_architecture, validate_file
from runner.core.events import Event, EventTail
from runner.core.paths import ensure_dir
from runner.core.rundir import RunDir
from runner.core.stages import STAGE_NAMES
from runner.spec import LoadedSpec, Problem, SpecError, parse_spec
from runner.spec.load import key_line
from runner.spec.model import check_job_name
from runner.spec.stages import first_changed_stage
from runner.store import Job, JobError, NewJob, Store, WrongState


def runs_root(store: Store) -> Path:
    """Where the store's jobs get their run directories: ``runs/`` beside the database (created here;
    :class:`StateDirError` if it cannot be a directory)."""
    return ensure_dir(store.path.parent / "runs", "the runs directory")


def load_all(paths: Sequence[str | Path]) -> list[LoadedSpec]:
    """Validate every job file as ``tuneq validate`` does (schema and data); one :class:`SpecError` lists
    all problems of all files."""
    loaded: list[LoadedSpec] = []
    problems: list[Problem] = []
    for path in paths:
        try:
            loaded.append(validate_file(path)[0])
        except SpecError as exc:
            problems.extend(exc.problems)
    if problems:
        raise SpecError(problems)
    return loaded


def validation_rows(loaded: LoadedSpec, data: DataCheck) -> list[tuple[str, str]]:
    """What a user checks before queueing a valid job, as (topic, facts) rows: model, data, template, LoRA,
    training, export, smoke (``tuneq validate`` and the TUI's submit screen show these)."""
    s = loaded.spec
    steps = (
        f"{s.train.max_steps} steps" if s.train.max_steps > 0 else f"{s.train.num_train_epochs:g} epoch(s)"
    )
    rows = (
        f"{data.train_rows} train + {data.eval_rows} eval rows, format {data.format}"
        if data.status == "checked"
        else data.status
    )
    batching = "padding-free" if s.train.flat_batches else "packed" if s.train.packing else "padded"
    return [
        (
            "model",
            f"{s.model.base}, max_seq_length {s.model.max_seq_length}, "
            f"{'4-bit' if s.model.load_in_4bit else '16-bit'} base",
        ),
        ("convert", base_architecture(s.model.base, s.model.revision)[1]),
        ("data", f"{s.data.source}: {rows}"),
        *([("eval", data.eval_from)] if data.eval_from else []),
        ("template", s.template.style),
        ("lora", f"r {s.lora.r}, alpha {s.lora.lora_alpha}, {len(s.lora.target_modules)} target modules"),
        (
            "training",
            f"{steps}, batch {s.train.per_device_train_batch_size} x {s.train.gradient_accumulation_steps}"
            + (" (on a GPU: fewer micro-batches where memory allows)" if s.train.auto_batch else "")
            + f", {batching}, lr {s.train.learning_rate:g}, {s.train.optim}",
        ),
        ("export", ", ".join(s.export.gguf) + (" + LoRA GGUF" if s.export.lora_gguf else "")),
        ("smoke", f"{len(s.smoke.prompts)} prompt(s) on {s.smoke.gguf}"),
    ]


def submit(
    store: Store, paths: Sequence[str | Path], *, priority: int = 0, name: str | None = None
) -> list[Job]:
    """Validate all files, then queue each with a run directory holding its spec text and data copy.

    An invalid file, or a ``name`` that breaks the job file's naming rule, raises :class:`SpecError` before
    anything is queued.
    """
    if name is not None:
        _check_name(name)
    root = runs_root(store)
    all_loaded = load_all(paths)
    _check_cluster_gpus(all_loaded, read_cluster_info(store.path.parent))
    jobs = []
    for loaded in all_loaded:
        new = NewJob(
            name=name or loaded.spec.name,
            spec_text=loaded.text,
            spec_hash=loaded.spec_hash,
            source_path=str(loaded.path.resolve()),
            priority=priority,
            retries=loaded.spec.run.retries,
        )
        staged = stage_run_dir(loaded, root)  # the data copy happens outside the transaction
        try:
            jobs.append(store.submit(new, now=time.time(), prepare=partial(_adopt, staged, loaded)))
        finally:
            shutil.rmtree(staged, ignore_errors=True)  # gone already once adopted
    return jobs


def _check_name(name: str) -> None:
    """Refuse a ``--name`` that a job file's ``name`` could not be (:class:`SpecError`, one line)."""
    try:
        check_job_name(name)
    except ValueError as exc:
        raise SpecError([Problem("--name", None, None, f"{name!r}: {exc}")]) from None


def _check_cluster_gpus(loaded: Sequence[LoadedSpec], cluster: ClusterInfo | None) -> None:
    """With a cluster worker (``cluster.json``), refuse jobs asking for more GPUs than any node has."""
    if cluster is None:
        return
    problems = [
        Problem(
            str(one.path),
            key_line(one.text, ("run", "gpus")),
            "run.gpus",
            why,
            "lower run.gpus, or add a bigger node",
        )
        for one in loaded
        if (why := too_many_gpus(one.spec.run.gpus, cluster)) is not None
    ]
    if problems:
        raise SpecError(problems)


def _adopt(staged: Path, loaded: LoadedSpec, job_id: int) -> Path:
    return adopt_staged(staged, loaded, job_id).root


def cancel(store: Store, job_id: int) -> Job:
    """Cancel a queued job now, or ask the worker to stop a running one."""
    return store.request_cancel(job_id, now=time.time())


def retry(store: Store, job_id: int) -> Job:
    """Requeue a failed, interrupted or cancelled job (it resumes from its run directory)."""
    return store.retry(job_id, now=time.time())


@dataclass(frozen=True)
class RetryPlan:
    """What ``retry_edited`` will do with an edited job file: which stages run again and why."""

    loaded: LoadedSpec
    data_changed: bool
    rerun_from: str | None  # the first stage that runs again (``None``: every finished stage is reused)
    changed: list[str]  # what changed: job-file sections, or "the data file"

    def describe(self) -> str:
        """One line: ``smoke changed: reuses data, …; runs smoke, fidelity, ship again``."""
        if self.rerun_from is None:
            return "nothing changed that a stage depends on: finished stages are reused"
        at = STAGE_NAMES.index(self.rerun_from)
        reused = f"reuses {', '.join(STAGE_NAMES[:at])}; " if at else ""
        return f"{', '.join(self.changed)} changed: {reused}runs {', '.join(STAGE_NAMES[at:])} again"


def plan_retry(store: Store, job_id: int, path: str | Path) -> RetryPlan:
    """Validate an edited job file for a retryable job (as ``submit`` does) and tell what would run again;
    nothing is changed. :class:`WrongState` for a job that cannot be retried, :class:`SpecError` for the
    file."""
    job = store.get(job_id)
    if not job.state.is_retryable:
        raise WrongState(job_id, job.state, "only failed, interrupted or cancelled jobs can be retried")
    (loaded,) = load_all([path])
    if not same_data(RunDir(Path(job.run_dir)), loaded):
        return RetryPlan(loaded, True, STAGE_NAMES[0], ["the data file"])
    changed = first_changed_stage(parse_spec(store.spec_text(job_id), f"job {job_id}"), loaded.spec)
    return RetryPlan(loaded, False, *(changed or (None, [])))


def retry_edited(store: Store, job_id: int, path: str | Path) -> tuple[Job, RetryPlan]:
    """Requeue a failed, interrupted or cancelled job with an edited job file, in the same run directory:
    every finished stage whose inputs did not change is reused (:func:`plan_retry` says which)."""
    plan = plan_retry(store, job_id, path)
    loaded = plan.loaded
    replace_inputs(RunDir(Path(store.get(job_id).run_dir)), loaded)
    edited = NewJob(loaded.spec.name, loaded.text, loaded.spec_hash, str(loaded.path.resolve()))
    return store.retry(job_id, now=time.time(), edited=edited), plan


def set_priority(store: Store, job_id: int, priority: int) -> Job:
    """Change a job's priority (higher runs first; equal priorities run oldest first)."""
    return store.set_priority(job_id, priority)


def bump_priority(store: Store, job_id: int, delta: int) -> Job:
    """Raise (or with a negative ``delta`` lower) a job's priority relative to its current value."""
    return store.bump_priority(job_id, delta)


def remove(store: Store, job_id: int, *, artifacts: bool = False) -> tuple[Job, Path | None]:
    """Forget a finished job; with ``artifacts`` also delete its run directory. Returns the job and the
    directory deleted (``None`` when there was none to delete).

    A run directory that is a symlink (moved to another disk) is deleted where it points, then the link.
    A directory that is not this job's run directory is refused (:class:`JobError`) before anything is
    forgotten; an :class:`OSError` while deleting comes after the job was forgotten.
    """
    target = _run_dir_to_delete(store.get(job_id)) if artifacts else None
    job = store.remove(job_id)
    if target is not None:
        shutil.rmtree(target)
        link = Path(job.run_dir)
        if link.is_symlink():
            link.unlink()
    return job, target


def _run_dir_to_delete(job: Job) -> Path | None:
    """The real directory behind ``job.run_dir`` if it is this job's run directory; ``None`` if it is gone."""
    path = Path(job.run_dir)
    if not path.exists():
        return None
    target = path.resolve()
    try:
        owner = str(RunDir(target).read_job_info().get("job")) if target.is_dir() else None
    except (OSError, ValueError):
        owner = None
    if owner != str(job.id):
        shown = f"{path} (-> {target})" if target != path else str(path)
        raise JobError(
            f"job {job.id}: {shown} is not this job's run directory (its job.json does not name job "
            f"{job.id}): nothing removed; delete it yourself if it is yours to delete"
        )
    return target


def job_events(store: Store, job_id: int, *, follow: bool = False, poll_s: float = 0.25) -> Iterator[Event]:
    """A job's events (all attempts); with ``follow``, keep reading until the job has ended."""
    tail = EventTail(RunDir(Path(store.get(job_id).run_dir)).events)
    while True:
        active = store.get(job_id).state.is_active if follow else False
        yield from tail.read_new()
        if not active:
            return
        time.sleep(poll_s)
