"""The cluster backend: a job runs on a Ray node, its files stream back into the head's run directory.

``RayBackend`` has the worker's :class:`~runner.backends.base.Backend` interface. ``start`` asks Ray for
one detached, named actor (:class:`runner.cluster.node.JobRunner`, namespace ``tuneq``) with as many GPUs
as the :class:`~runner.backends.base.Launch` holds, and returns at once: the head starts many jobs a second,
never waiting for Ray. A thread per attempt waits until Ray has placed the actor on a node, hands it the
Launch, the job's inputs and the checkpoints of an earlier attempt, and has it start the pipeline; then it
copies the node's new events and log bytes into the head's run directory as they come (``tuneq log -f``,
``status`` and the TUI read them there), each complete checkpoint as it is saved, and at the end the run
directory's files (all but ``merged/``), sha256-checked, in chunks. The handle is ``<actor name>``, and
``<actor name>@<node address>/<node id>`` once placed (:meth:`RayBackend.locate`).

An actor no node has made within ``place_timeout_s`` while something else holds the GPUs it needs (the
cluster is shared, or the head's count is behind a lost node) ends its attempt ``not_started``: the job
waits in the queue again without spending a retry. (One that waits behind this head's own starts waits on:
a busy node can take long to start Ray's worker processes.) A node that fails to start a placed job's
pipeline spends one (``interrupted``).

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
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import ray
from ray.exceptions import ActorDiedError, ActorUnavailableError, GetTimeoutError, RayActorError

from runner.backends.base import PIPELINE_CMD_ENV, Launch, Outcome
from runner.backends.container import queue_id
from runner.backends.errors import BackendError
from runner.backends.local import UNKNOWN_EXIT
from runner.cluster.node import CHUNK_BYTES, FileInfo, JobRunner, Update, read_chunk
from runner.core.atomic import is_aside, replaced, write_atomic
from runner.core.present import WAITING_FOR_GPU
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
    gpus: int = 0  # how many it asked Ray for
    running: threading.Event = field(default_factory=threading.Event)  # its pipeline runs on the node
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
        """Ask Ray for an actor with ``launch.gpus``'s count of GPUs and return its name at once; the
        attempt's thread starts the pipeline once a node has it (:meth:`poll` says how that went)."""
        name = f"tuneq-{self.queue}-{launch.job_id}-{secrets.token_hex(3)}"
        run = RunDir(launch.run_dir)
        actor: Any = self._runner.options(
            name=name,
            namespace=NAMESPACE,
            lifetime="detached",
            num_gpus=len(launch.gpus),
            num_cpus=0,
            max_restarts=0,
        ).remote(launch.job_id, name, str(run.root))
        secret_env = {k: v for k in SECRET_ENV_VARS if (v := os.environ.get(k))}
        remote = replace(launch, env={**secret_env, **launch.env})
        self._follow(Attempt(name, actor, run, gpus=len(launch.gpus)), remote)
        return name

    def free_gpus(self) -> int:
        """GPUs free on the cluster for another job: its GPUs less this head's attempts' (started or still
        waiting for a node) and those something else holds."""
        total, free = _cluster_gpus()
        ours = sum(a.gpus for a in list(self._attempts.values()))
        return int(total - ours - max(0.0, total - free - ours))

    def locate(self, handle: str) -> str:
        """``<actor name>@<node>`` once Ray has placed the actor and it started the pipeline."""
        attempt = self._attempts.get(handle.partition("@")[0])
        return (
            f"{attempt.name}@{attempt.node}" if attempt is not None and attempt.running.is_set() else handle
        )

    def poll(self, handle: str) -> Outcome | None:
        """``None`` while the job waits for a node, runs, or its files are still coming back; how it ended
        after."""
        name = handle.partition("@")[0]
        attempt = self._attempts.get(name) or self._adopt(handle)
        if attempt is None:
            return Outcome(UNKNOWN_EXIT, "its cluster actor is gone (node lost or cluster restarted)", True)
        if attempt.thread is not None and attempt.thread.is_alive():
            return None
        self._attempts.pop(name, None)
        return attempt.outcome

    def stop(self, handle: str, grace_s: float = 10.0) -> None:
        """Stop the remote pipeline's process group (SIGTERM, SIGKILL after ``grace_s``), then copy back
        its last events, log and checkpoint; idempotent."""
        attempt = self._attempts.get(handle.partition("@")[0]) or self._adopt(handle)
        if attempt is None:
            return
        attempt.stopping = True
        while not attempt.running.wait(0.05):  # still starting: its thread sees ``stopping`` before it runs
            if attempt.thread is None or not attempt.thread.is_alive():
                return
        with contextlib.suppress(ray.exceptions.RayError):
            ray.get(attempt.actor.stop.remote(grace_s), timeout=grace_s + 30)
        if attempt.thread is not None:
            attempt.thread.join(timeout=grace_s + 60)

    # --- following an attempt ---------------------------------------------------------------------

    def _follow(self, attempt: Attempt, launch: Launch | None = None) -> None:
        """Follow the attempt in a thread of its own, which first starts it when given its ``launch``."""
        self._attempts[attempt.name] = attempt
        attempt.thread = threading.Thread(
            target=self._sync, args=(attempt, launch), name=attempt.name, daemon=True
        )
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
        attempt.running.set()
        if done.get("actor") == name:
            attempt.events_offset = file_end(run.events) - int(done["events_base"])
            attempt.log_offset = file_end(run.log) - int(done["log_base"])
        attempt.synced = {p.name for p in run.checkpoints.glob("checkpoint-*")}
        log.info("re-attached to %s", handle)
        self._follow(attempt)
        return attempt

    def _sync(self, attempt: Attempt, launch: Launch | None) -> None:
        """The attempt's thread: :meth:`_start_remote` (given a ``launch``), :meth:`_follow_to_end`, and an
        outcome whatever goes wrong."""
        try:
            if launch is not None and not self._start_remote(attempt, launch):
                return
            self._follow_to_end(attempt)
        except Exception as exc:  # unforeseen: the job must still end, never hang as running
            log.exception("%s: following it failed", attempt.name)
            attempt.outcome = Outcome(
                UNKNOWN_EXIT, f"following it on node {attempt.node} failed: {exc}", True
            )
            _release(attempt)

    def _start_remote(self, attempt: Attempt, launch: Launch) -> bool:
        """Wait until Ray has placed the actor, send it the inputs and start the pipeline there; False
        (with the outcome) if no node took it in time, it failed to start, or it was stopped meanwhile."""
        placed = attempt.actor.head_dir.remote()  # answers once a node has made the actor
        deadline = time.monotonic() + self.place_timeout_s
        while not ray.wait([placed], timeout=1.0)[0] and not attempt.stopping:
            if time.monotonic() > deadline and not self._taken_by_others(attempt):
                deadline = time.monotonic() + self.place_timeout_s  # a node is still making it: wait on
            elif time.monotonic() > deadline:
                why = f"no cluster node had {len(launch.gpus)} GPU(s) free for {self.place_timeout_s:g} s"
                attempt.outcome = Outcome(UNKNOWN_EXIT, f"{WAITING_FOR_GPU}: {why}", not_started=True)
                _kill(attempt)
                return False
        if attempt.stopping:
            attempt.outcome = Outcome(UNKNOWN_EXIT, "stopped before it started", interrupted=True)
            _kill(attempt)
            return False
        override = os.environ.get(PIPELINE_CMD_ENV)  # the tests' stand-in pipeline
        try:
            ray.get(placed, timeout=self.place_timeout_s)
            attempt.synced = send_inputs(attempt.actor, attempt.run, self.place_timeout_s)
            where: dict[str, str] = ray.get(
                attempt.actor.start.remote(launch, shlex.split(override) if override else None),
                timeout=self.place_timeout_s,
            )
        except (OSError, ray.exceptions.RayError) as exc:  # the actor died, the node's backend failed, …
            log.warning("%s: not started: %s", attempt.name, _first_line(exc))
            attempt.outcome = Outcome(UNKNOWN_EXIT, f"not started: {_first_line(exc)}", interrupted=True)
            _release(attempt)
            return False
        attempt.node = f"{where['node_ip']}/{where['node_id'][:8]}"  # the address, and which node
        attempt.save()
        attempt.running.set()
        log.info("job %s runs on node %s", launch.job_id, attempt.node)
        return True

    def _taken_by_others(self, attempt: Attempt) -> bool:
        """Whether the GPUs the attempt waits for are held by something else than this head's attempts
        (another user of the cluster; a node lost before the count caught up), rather than free or held by
        this head's own starts that a busy node is still making (a new worker process can take long)."""
        total, free = _cluster_gpus()
        ours = sum(a.gpus for a in list(self._attempts.values()) if a is not attempt)
        return free < attempt.gpus and total - free > ours

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
    _kill(attempt)


def _cluster_gpus() -> tuple[float, float]:
    """The GPUs of the cluster's live nodes, and how many of them Ray has not given to an actor."""
    return ray.cluster_resources().get("GPU", 0), ray.available_resources().get("GPU", 0)


def _kill(attempt: Attempt) -> None:
    """End the actor (freeing its GPUs, or its request for them if no node has placed it yet)."""
    with contextlib.suppress(ray.exceptions.RayError, ValueError):
        ray.kill(attempt.actor, no_restart=True)


def _first_line(exc: BaseException) -> str:
    """The first line of what went wrong: of the node's own exception when Ray wraps one."""
    if isinstance(cause := getattr(exc, "cause", None), BaseException):  # a RayTaskError's
        exc = cause
    return (str(exc).strip().splitlines() or [type(exc).__name__])[0]
