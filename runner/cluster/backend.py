"""The cluster backend: a job runs on a Ray node, its files stream back into the head's run directory.

``RayBackend`` has the worker's :class:`~runner.backends.base.Backend` interface. ``start`` makes one
detached, named actor (:class:`runner.cluster.node.JobRunner`, namespace ``tuneq``) asking Ray for the
job's ``[run] gpus``, hands it the job's inputs and the checkpoints of an earlier attempt, and waits until
it runs. A thread per attempt then copies the node's new events and log bytes into the head's run
directory as they come (``tuneq log -f``, ``status`` and the TUI read them there), each complete
checkpoint as it is saved, and at the end the run directory's files (all but ``merged/``), sha256-checked,
in chunks. The handle is ``<actor name>@<node address>/<node id>``.

A node that dies (``ActorDiedError``, or an actor unreachable for ``lost_after_s``) ends the attempt with
an ``interrupted`` outcome: the worker requeues the job, which resumes from the synced checkpoint. A head
worker that restarts finds its predecessor's actors by name (``poll``/``stop`` accept any handle) and
follows them on, copying from where the head's files end (``.cluster.json`` in the run directory says
where the attempt's bytes began).
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import os
import secrets
import shlex
import shutil
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import ray
from ray.exceptions import ActorDiedError, ActorUnavailableError, GetTimeoutError, RayActorError

from runner.backends.base import PIPELINE_CMD_ENV, Launch, Outcome
from runner.backends.container import queue_id
from runner.backends.errors import BackendBusy, BackendError
from runner.backends.local import UNKNOWN_EXIT
from runner.cluster.node import CHUNK_BYTES, FileInfo, JobRunner, Update, read_chunk
from runner.core.atomic import is_aside, replaced, write_atomic
from runner.core.rundir import LAYOUT, RunDir
from runner.core.secrets import SECRET_ENV_VARS
from runner.core.tail import file_end
from runner.ship.files import link_or_copy

log = logging.getLogger("tuneq.worker")
NAMESPACE = "tuneq"
# What the head writes or streams itself: the inputs, events, log, checkpoints and the attempt's record.
STREAMED = tuple(
    str(p)
    for p in (
        LAYOUT.job_toml,
        LAYOUT.job_json,
        LAYOUT.input_dir,
        LAYOUT.events,
        LAYOUT.log,
        LAYOUT.checkpoints,
        LAYOUT.cluster_sync,
    )
)
IN_FLIGHT = 4  # chunk requests outstanding during a transfer


@dataclass
class Attempt:
    """One job attempt on the cluster, as the head follows it."""

    name: str
    actor: Any
    run: RunDir
    node: str = "?"
    events_offset: int = 0  # bytes of the node's events.jsonl copied (appended to the head's)
    log_offset: int = 0
    synced: set[str] = field(default_factory=set)
    outcome: Outcome | None = None
    stopping: bool = False
    thread: threading.Thread | None = None

    def save(self) -> None:
        """Record the actor and where its bytes begin in the head's files: a restarted head worker then
        knows how much was copied from the files' sizes alone (exact even if it died mid-append)."""
        data = {
            "actor": self.name,
            "node": self.node,
            "events_base": file_end(self.run.events),
            "log_base": file_end(self.run.log),
        }
        write_atomic(self.run.cluster_sync, json.dumps(data))


class RayBackend:
    """Runs each job on a node of the Ray cluster this process is connected to."""

    name = "ray"
    reattaches = True  # the actor runs on, whichever head worker follows it

    def __init__(
        self,
        queue: str | None = None,
        *,
        sync_s: float = 0.2,
        lost_after_s: float = 15.0,
        place_timeout_s: float = 30.0,  # below the lease: the worker loop waits meanwhile
    ) -> None:
        self.queue = queue or queue_id()
        self.sync_s = sync_s
        self.lost_after_s = lost_after_s
        self.place_timeout_s = place_timeout_s
        self._attempts: dict[str, Attempt] = {}  # handle -> attempt
        self._runner: Any = ray.remote(JobRunner)  # Ray's generic types do not follow an actor class

    # --- the Backend interface ---------------------------------------------------------------------

    def start(self, launch: Launch) -> str:
        """Start the job on a node with ``[run] gpus`` free GPUs; wait until its pipeline runs there."""
        name = f"tuneq-{self.queue}-{launch.job_id}-{secrets.token_hex(3)}"
        run = RunDir(launch.run_dir)
        actor: Any = self._runner.options(
            name=name,
            namespace=NAMESPACE,
            lifetime="detached",
            num_gpus=launch.spec.run.gpus,
            num_cpus=0,
            max_restarts=0,
        ).remote(launch.job_id, name, str(run.root))
        env = {**{k: v for k in SECRET_ENV_VARS if (v := os.environ.get(k))}, **launch.env}
        override = os.environ.get(PIPELINE_CMD_ENV)  # the tests' stand-in pipeline
        try:
            shipped = send_inputs(actor, run, self.place_timeout_s)
            where: dict[str, str] = ray.get(
                actor.start.remote(env, shlex.split(override) if override else None),
                timeout=self.place_timeout_s,
            )
        except ray.exceptions.RayError as exc:  # not placed in time, or the actor died
            ray.kill(actor, no_restart=True)
            raise BackendBusy(f"no cluster node started the job: {_first_line(exc)}") from None
        node = f"{where['node_ip']}/{where['node_id'][:8]}"  # the address, and which node (tests share one)
        attempt = Attempt(name, actor, run, node=node, synced=shipped)
        attempt.save()
        handle = f"{name}@{attempt.node}"
        self._follow(handle, attempt)
        log.info("job %s runs on node %s", launch.job_id, node)
        return handle

    def poll(self, handle: str) -> Outcome | None:
        """``None`` while the job runs or its files are still coming back; how it ended after."""
        attempt = self._attempts.get(handle) or self._adopt(handle)
        if attempt is None:
            return Outcome(UNKNOWN_EXIT, "its cluster actor is gone (node lost or cluster restarted)", True)
        if attempt.thread is not None and attempt.thread.is_alive():
            return None
        self._attempts.pop(handle, None)
        return attempt.outcome

    def stop(self, handle: str, grace_s: float = 10.0) -> None:
        """Stop the remote pipeline's process group (SIGTERM, SIGKILL after ``grace_s``), then copy back
        its last events, log and checkpoint; idempotent."""
        attempt = self._attempts.get(handle) or self._adopt(handle)
        if attempt is None:
            return
        attempt.stopping = True
        with contextlib.suppress(ray.exceptions.RayError):
            ray.get(attempt.actor.stop.remote(grace_s), timeout=grace_s + 30)
        if attempt.thread is not None:
            attempt.thread.join(timeout=grace_s + 60)

    # --- following an attempt ---------------------------------------------------------------------

    def _follow(self, handle: str, attempt: Attempt) -> None:
        self._attempts[handle] = attempt
        attempt.thread = threading.Thread(target=self._sync, args=(attempt,), name=handle, daemon=True)
        attempt.thread.start()

    def _adopt(self, handle: str) -> Attempt | None:
        """Follow an attempt a previous head worker started, if its actor still lives."""
        name = handle.partition("@")[0]
        try:
            actor: Any = ray.get_actor(name, namespace=NAMESPACE)
            head_dir: str = ray.get(actor.head_dir.remote(), timeout=30)
        except (ValueError, ray.exceptions.RayError):
            return None
        run = RunDir(Path(head_dir))
        try:
            done = json.loads(run.cluster_sync.read_text())
        except (OSError, ValueError):
            done = {}
        attempt = Attempt(name, actor, run, node=handle.partition("@")[2] or "?")
        if done.get("actor") == name:
            attempt.events_offset = file_end(run.events) - int(done["events_base"])
            attempt.log_offset = file_end(run.log) - int(done["log_base"])
        attempt.synced = {p.name for p in run.checkpoints.glob("checkpoint-*")}
        log.info("re-attached to %s", handle)
        self._follow(handle, attempt)
        return attempt

    def _sync(self, attempt: Attempt) -> None:
        """The attempt's thread: :meth:`_follow_to_end`, and an outcome whatever goes wrong."""
        try:
            self._follow_to_end(attempt)
        except Exception as exc:  # unforeseen: the job must still end, never hang as running
            log.exception("%s: following it failed", attempt.name)
            attempt.outcome = Outcome(
                UNKNOWN_EXIT, f"following it on node {attempt.node} failed: {exc}", True
            )
            _release(attempt)

    def _follow_to_end(self, attempt: Attempt) -> None:
        """Copy what the node has new until the pipeline ends, then its files; record the outcome."""
        unreachable_since: float | None = None
        while True:
            try:
                update: Update = ray.get(
                    attempt.actor.update.remote(attempt.events_offset, attempt.log_offset), timeout=30
                )
            except ActorDiedError as exc:
                attempt.outcome = _lost(attempt, exc)
                return
            except (ActorUnavailableError, GetTimeoutError) as exc:
                unreachable_since = unreachable_since or time.monotonic()
                if time.monotonic() - unreachable_since > self.lost_after_s:
                    attempt.outcome = _lost(attempt, exc)
                    return
                time.sleep(self.sync_s)
                continue
            unreachable_since = None
            try:
                self._take(attempt, update)
                if update.outcome is not None and not update.events and not update.log:
                    if not attempt.stopping:
                        self._bring_back(attempt)
                    attempt.outcome = update.outcome
                    _release(attempt)
                    return
            except (RayActorError, GetTimeoutError) as exc:
                attempt.outcome = _lost(attempt, exc)
                return
            except (OSError, ray.exceptions.RayError) as exc:  # a full disk, a checksum that differs, …
                log.warning("%s: copying its files failed: %s", attempt.name, _first_line(exc))
                why = f"copying its files from node {attempt.node} failed: {_first_line(exc)}"
                attempt.outcome = Outcome(UNKNOWN_EXIT, why, interrupted=True)
                _release(attempt)
                return
            if update.outcome is None and not update.events and not update.log:
                time.sleep(self.sync_s)

    def _take(self, attempt: Attempt, update: Update) -> None:
        """Append new events and log bytes to the head's files, and copy new complete checkpoints."""
        for data, path, offset in (
            (update.events, attempt.run.events, "events_offset"),
            (update.log, attempt.run.log, "log_offset"),
        ):
            if data:
                with path.open("ab") as handle:
                    handle.write(data)
                    handle.flush()
                    os.fsync(handle.fileno())
                setattr(attempt, offset, getattr(attempt, offset) + len(data))
        for name in [c for c in update.checkpoints if c not in attempt.synced]:
            try:
                self._copy_checkpoint(attempt, name)
            except (BackendError, ray.exceptions.RayTaskError) as exc:  # changed meanwhile: next round
                log.warning("%s: checkpoint %s: %s (trying again)", attempt.name, name, _first_line(exc))
                continue
            attempt.synced.add(name)
        for gone in attempt.synced - set(update.checkpoints):  # the trainer rotated it out
            shutil.rmtree(attempt.run.checkpoints / gone, ignore_errors=True)
            attempt.synced.discard(gone)

    def _copy_checkpoint(self, attempt: Attempt, name: str) -> None:
        """Copy a checkpoint into ``checkpoints/<name>`` whole (a partial copy is never seen there)."""
        final = attempt.run.checkpoints / name
        folder = final.relative_to(attempt.run.root)
        infos = ray.get(attempt.actor.files.remote(folder.as_posix()), timeout=60)
        if not infos:
            raise BackendError("gone from the node (rotated out)")
        stamp = ray.get(attempt.actor.files.remote(str(LAYOUT.checkpoints), nested=False), timeout=60)
        with replaced(final) as partial:
            for info in infos:
                fetch(attempt.actor, info, partial / Path(info.path).relative_to(folder))
            for info in stamp:  # the settings stamp the trainer checks before it resumes
                fetch(attempt.actor, info, attempt.run.root / info.path)
        log.info("%s: checkpoint %s copied to the head", attempt.name, name)

    def _bring_back(self, attempt: Attempt) -> None:
        """Copy the ended run's files (report, logs, ship/, GGUFs, …) into the head's run directory."""
        infos: list[FileInfo] = ray.get(attempt.actor.files.remote(), timeout=600)
        fetched: dict[str, Path] = {}  # sha256 -> a copy here: ship/ hard-links the GGUFs of gguf/
        for info in infos:
            if Path(info.path).parts[0] in STREAMED:
                continue
            dest = attempt.run.root / info.path
            if info.sha256 in fetched:
                dest.parent.mkdir(parents=True, exist_ok=True)
                link_or_copy(fetched[info.sha256], dest)
            else:
                fetch(attempt.actor, info, dest)
                fetched[info.sha256] = dest


def fetch(actor: Any, info: FileInfo, dest: Path) -> None:
    """Copy one file from the node in chunks (a few requests in flight), check its sha256, then rename it
    into place; :class:`BackendError` if the bytes do not match."""
    dest.parent.mkdir(parents=True, exist_ok=True)
    digest = hashlib.sha256()
    offsets = list(range(0, info.size, CHUNK_BYTES))
    with replaced(dest) as part:
        with part.open("wb") as out:
            pending = [actor.chunk.remote(info.path, o) for o in offsets[:IN_FLIGHT]]
            next_index = len(pending)
            while pending:
                data = ray.get(pending.pop(0), timeout=120)
                if next_index < len(offsets):
                    pending.append(actor.chunk.remote(info.path, offsets[next_index]))
                    next_index += 1
                digest.update(data)
                out.write(data)
        if digest.hexdigest() != info.sha256:
            raise BackendError(f"{info.path}: sha256 differs after the copy from the node")


def send_inputs(actor: Any, run: RunDir, timeout_s: float) -> set[str]:
    """Send what a node needs to run the job, in chunks (a few in flight; an actor runs one caller's
    calls in order): spec, facts, data copy, and the checkpoints of earlier attempts, whose names it returns."""
    paths = [run.job_toml, run.job_json]
    for folder in (run.input_dir, run.checkpoints):
        found = sorted(folder.rglob("*")) if folder.exists() else []
        paths += [p for p in found if p.is_file() and not is_aside(p.relative_to(run.root))]
    pending: list[Any] = []
    for path in paths:
        rel = path.relative_to(run.root).as_posix()
        for offset in range(0, max(path.stat().st_size, 1), CHUNK_BYTES):  # an empty file: one empty chunk
            pending.append(actor.receive.remote(rel, offset, read_chunk(path, offset)))
            if len(pending) >= IN_FLIGHT:
                ray.get(pending.pop(0), timeout=timeout_s)
    ray.get(pending, timeout=timeout_s)
    return {p.name for p in run.checkpoints.glob("checkpoint-*")} if run.checkpoints.exists() else set()


def _lost(attempt: Attempt, exc: BaseException) -> Outcome:
    log.warning("%s: node %s lost: %s", attempt.name, attempt.node, _first_line(exc))
    _release(attempt)
    return Outcome(UNKNOWN_EXIT, f"cluster node {attempt.node} was lost", True)


def _release(attempt: Attempt) -> None:
    """Remove the node's copy and end the actor (freeing its GPUs)."""
    with contextlib.suppress(ray.exceptions.RayError):
        ray.get(attempt.actor.remove.remote(), timeout=30)
    with contextlib.suppress(ray.exceptions.RayError, ValueError):
        ray.kill(attempt.actor, no_restart=True)


def _first_line(exc: BaseException) -> str:
    return (str(exc).strip().splitlines() or [type(exc).__name__])[0]
