"""The local backend: each job's pipeline is a child process in its own session (and process group).

The command is :func:`runner.backends.base.pipeline_command` and the run directory, started in the run
directory with stdin closed and stdout+stderr appended to ``log.txt``, secrets scrubbed on the way
(:mod:`runner.backends.logscrub`). Its own session means a Ctrl-C or a hang-up
aimed at the worker never reaches it, and :meth:`LocalBackend.stop` can signal the whole group.

The handle is the pid. A pid that is not this backend's child (its worker was restarted) is polled with
``os.kill(pid, 0)``; its exit status is then unknown (:data:`UNKNOWN_EXIT`) and the job's ``job_end``
event is what tells how it ended.

The group dies with its job: when the leader is found dead (the OOM killer, ``kill -9``), whatever is left
of its process group is killed, and so is every descendant seen while the leader lived (recorded with
psutil at a poll, at most every :data:`SCAN_EVERY_S`: a scan reads every process of the machine, ~10 ms
with 600 of them) that moved to a session of its own. Nothing is left holding GPU memory.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import time
from collections.abc import Sequence

import psutil

from runner.backends.base import Launch, Outcome, pipeline_command
from runner.backends.logscrub import drain, start_relay
from runner.core.rundir import RunDir
from runner.core.workers import pid_alive

UNKNOWN_EXIT = 255
SCAN_EVERY_S = 1.0  # how often a running job's descendants are recorded (at its polls)


class LocalBackend:
    """Runs pipelines as local child processes, one process group each."""

    name = "local"
    reattaches = False

    def __init__(self, command: Sequence[str] | None = None) -> None:
        self.command = list(command) if command is not None else pipeline_command()
        self._children: dict[str, tuple[str, subprocess.Popen[bytes]]] = {}
        self._relays: dict[str, subprocess.Popen[bytes]] = {}  # each child's log writer
        self._descendants: dict[str, dict[int, float]] = {}  # handle -> {pid: create time} seen alive
        self._scanned: dict[str, float] = {}  # handle -> when its descendants were last recorded

    def start(self, launch: Launch) -> str:
        """Start ``launch``'s pipeline; return its pid."""
        env = {**os.environ, **launch.env, "PYTHONUNBUFFERED": "1"}
        if launch.gpus:
            env["CUDA_VISIBLE_DEVICES"] = ",".join(str(g) for g in launch.gpus)
        relay, log = start_relay(RunDir(launch.run_dir).log, env)
        try:
            proc = subprocess.Popen(
                [*self.command, str(launch.run_dir)],
                cwd=launch.run_dir,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                env=env,
                start_new_session=True,
            )
        finally:
            os.close(log)
        handle = str(proc.pid)
        self._children[handle] = (launch.job_id, proc)
        self._relays[handle] = relay
        return handle

    def locate(self, handle: str) -> str:
        """``handle`` itself: the job runs on this machine."""
        return handle

    def poll(self, handle: str) -> Outcome | None:
        """``None`` while the process runs; its exit code (or :data:`UNKNOWN_EXIT` for a non-child) after.

        A dead leader's leftovers (its group, its recorded descendants) are killed before it is reaped.
        """
        if self._alive(handle):
            self._track_descendants(handle)
            return None
        self._kill_leftovers(handle)
        self._descendants.pop(handle, None)
        self._scanned.pop(handle, None)
        child = self._children.pop(handle, None)
        if child is not None:
            code = child[1].wait()
            drain(self._relays.pop(handle, None))  # log.txt holds the pipeline's last words
            return _outcome(code)
        return Outcome(UNKNOWN_EXIT, "exit status unknown (started by an earlier worker)")

    def stop(self, handle: str, grace_s: float = 10.0) -> None:
        """SIGTERM the process group, then SIGKILL it if it still runs after ``grace_s``; idempotent."""
        if self._alive(handle):
            _signal_group(int(handle), signal.SIGTERM)
            self._wait(handle, grace_s)
        self._kill_leftovers(handle)  # also the group's stragglers (data loader workers)
        self._wait(handle, 5.0)

    def _track_descendants(self, handle: str) -> None:
        """Record the leader's live descendants, to find those that leave its session later (unless that was
        done less than :data:`SCAN_EVERY_S` ago)."""
        now = time.monotonic()
        if now - self._scanned.get(handle, -SCAN_EVERY_S) < SCAN_EVERY_S:
            return
        self._scanned[handle] = now
        seen = self._descendants.setdefault(handle, {})
        with contextlib.suppress(psutil.Error):
            for proc in psutil.Process(int(handle)).children(recursive=True):
                with contextlib.suppress(psutil.Error):
                    seen[proc.pid] = proc.create_time()

    def _kill_leftovers(self, handle: str) -> None:
        """SIGKILL the job's process group and its recorded descendants that still run."""
        if _group_is_ours(int(handle)):
            _signal_group(int(handle), signal.SIGKILL)
        for pid, created in self._descendants.get(handle, {}).items():
            with contextlib.suppress(psutil.Error):
                proc = psutil.Process(pid)
                if proc.create_time() == created:  # the same process, not a reused pid
                    proc.kill()

    def _wait(self, handle: str, seconds: float) -> None:
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline and self._alive(handle):
            time.sleep(0.05)

    def _alive(self, handle: str) -> bool:
        child = self._children.get(handle)
        if child is not None:
            return _child_running(child[1])
        return _leader_alive(int(handle))


def _child_running(proc: subprocess.Popen[bytes]) -> bool:
    """Whether a child runs, without reaping it: until then its pid (and group id) cannot be reused."""
    if proc.returncode is not None:
        return False
    try:
        return os.waitid(os.P_PID, proc.pid, os.WEXITED | os.WNOHANG | os.WNOWAIT) is None
    except ChildProcessError:
        return proc.poll() is None


def _group_is_ours(pid: int) -> bool:
    """Whether process group ``pid`` is the one our leader started: no process has the pid (Linux keeps
    the number while a group bears it), or the process with it leads its own session, as our leader
    (running or not yet reaped) does and a reused pid rarely does."""
    try:
        return os.getsid(pid) == pid
    except ProcessLookupError:
        return True
    except OSError:
        return False


def _leader_alive(pid: int) -> bool:
    """Whether ``pid`` runs and leads its own session, as our pipelines do (a reused pid rarely does)."""
    try:
        return pid_alive(pid) and os.getsid(pid) == pid
    except ProcessLookupError:
        return False


def _signal_group(pid: int, sig: signal.Signals) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pid, sig)


def _outcome(code: int) -> Outcome:
    if code < 0:
        return Outcome(code, f"killed by {signal.Signals(-code).name}")
    return Outcome(code, None if code == 0 else f"exit code {code}")
