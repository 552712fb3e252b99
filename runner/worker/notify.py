"""Word when a job ends: a command and/or a webhook, as the job's ``[notify]`` table (else the queue's
``notify.toml`` in the state directory) says.

:func:`job_ended` is called where the worker records a job's end (:func:`runner.worker.settle.settle`).
It sends nothing for a job that is requeued (interrupted with retries left: it goes on). The sending runs
in a thread of its own, with the table's ``timeout_s`` on the command and on the POST: a notifier that
hangs or fails is logged and never fails or delays a job. The webhook URL comes from the environment
variable ``url_env`` names; log lines show only its scheme and host, and error texts are redacted.
"""

from __future__ import annotations

import json
import logging
import os
import signal
import socket
import subprocess
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from runner.core.events import EventTail
from runner.core.events import JobEnd as EndEvent
from runner.core.jobstate import JobState
from runner.core.paths import state_dir
from runner.core.present import duration
from runner.core.rundir import RunDir
from runner.core.secrets import redact
from runner.core.tested import tested_gguf
from runner.spec import Problem, SpecError, parse_spec
from runner.spec.load import parse_notify_defaults
from runner.spec.model import NotifySpec
from runner.store import Job, Store

log = logging.getLogger("tuneq.worker")
NOTIFY_FILE = "notify.toml"  # the queue's default [notify] table, in the state directory
_OUTPUT_LINES = 5  # lines of a failing command's output that reach the worker's log
_sending: list[threading.Thread] = []  # notifications being sent, for :func:`drain`
_lock = threading.Lock()


@dataclass(frozen=True)
class JobEnd:
    """What a notification tells: the fields of the ``json`` body and of the command's environment."""

    job: int
    name: str
    state: str
    reason: str | None
    tested_gguf: str | None  # absolute path of the tested GGUF (a succeeded job's)
    duration_s: float | None  # the last attempt's
    run_dir: str
    host: str

    @classmethod
    def of(cls, job: Job) -> JobEnd:
        """The end of ``job`` as recorded, with the tested GGUF its attempt's ``job_end`` names."""
        run_dir = RunDir(Path(job.run_dir))
        ends = [
            e
            for e in EventTail(run_dir.events, max(job.events_offset, 0)).read_new()
            if isinstance(e, EndEvent)
        ]
        tested = tested_gguf(ends[-1]) if ends else None
        duration = job.finished_at - job.started_at if job.finished_at and job.started_at else None
        return cls(
            job.id,
            job.name,
            str(job.state),
            job.reason,
            str(run_dir.root / tested.path) if tested else None,
            round(duration, 1) if duration is not None else None,
            job.run_dir,
            socket.gethostname(),
        )

    @property
    def text(self) -> str:
        """One line for people: ``tuneq job 3 'demo' succeeded after 1m05s on box: /…/demo-Q4_K_M.gguf``."""
        took = f" after {duration(self.duration_s)}" if self.duration_s is not None else ""
        what = self.tested_gguf if self.state == JobState.SUCCEEDED else self.reason
        return f"tuneq job {self.job} '{self.name}' {self.state}{took} on {self.host}" + (
            f": {what}" if what else ""
        )

    def environment(self) -> dict[str, str]:
        """The command's extra environment: ``TUNEQ_JOB_ID``, ``_NAME``, ``_STATE``, ``_REASON``, ``_GGUF``,
        ``_DURATION_S``, ``_RUN_DIR`` (empty when unknown)."""
        values = {
            "ID": self.job,
            "NAME": self.name,
            "STATE": self.state,
            "REASON": self.reason,
            "GGUF": self.tested_gguf,
            "DURATION_S": self.duration_s,
            "RUN_DIR": self.run_dir,
        }
        return {f"TUNEQ_JOB_{k}": "" if v is None else str(v) for k, v in values.items()}


def job_ended(store: Store, job: Job) -> None:
    """Send the notification of a job whose end was just recorded, in the background; never raises."""
    try:
        if job.state.is_active:  # requeued: the job goes on
            return
        spec = notify_spec(store.spec_text(job.id), f"job {job.id}")
    except Exception:  # a notification must never disturb the recording of a job's end
        log.exception("job %d: no notification (its [notify] table could not be read)", job.id)
        return
    if spec is not None and job.state in spec.on and (spec.command or spec.url_env):
        _in_background(lambda: _send(spec, job), f"notify-{job.id}")


def _send(spec: NotifySpec, job: Job) -> None:
    """Read the job's end (its events: off the worker's loop), then POST and run the command side by side."""
    try:
        end = JobEnd.of(job)
    except Exception:
        log.exception("job %d: no notification (its end could not be read)", job.id)
        return
    if spec.url_env:
        _in_background(lambda: post_webhook(spec, end), f"notify-webhook-{job.id}")
    if spec.command:
        run_command(spec, end)


def _in_background(send: Callable[[], object], name: str) -> None:
    thread = threading.Thread(target=send, name=name, daemon=True)
    with _lock:
        _sending[:] = [t for t in _sending if t.is_alive()] + [thread]
    thread.start()


def notify_spec(spec_text: str, where: str) -> NotifySpec | None:
    """The job file's ``[notify]`` table, else the queue's ``notify.toml`` (``None``: nothing to send)."""
    spec = parse_spec(spec_text, where)
    if spec.notify_given:
        return spec.notify
    return queue_default()


def queue_default() -> NotifySpec | None:
    """``notify.toml`` in the state directory; ``None`` when absent or invalid (its problems are logged)."""
    try:
        return read_queue_default()
    except SpecError as exc:
        for problem in exc.problems:
            log.warning("no notification: %s", str(problem).replace("\n", ";"))
    return None


def read_queue_default() -> NotifySpec | None:
    """``notify.toml`` in the state directory, ``None`` when absent; :class:`SpecError` if it is invalid."""
    path = state_dir() / NOTIFY_FILE
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return None
    except (OSError, UnicodeDecodeError) as exc:
        raise SpecError([Problem(str(path), None, None, f"cannot be read: {exc}", None)]) from None
    return parse_notify_defaults(text, str(path))


def send_test(spec: NotifySpec) -> bool:
    """``tuneq notify-test``: send a made-up job end (job 0, 'notify-test', succeeded) now, in this thread;
    True if every notifier configured in ``spec`` succeeded (each outcome is logged)."""
    end = JobEnd(0, "notify-test", "succeeded", None, None, 0.0, str(state_dir()), socket.gethostname())
    posted = post_webhook(spec, end) if spec.url_env else True
    ran = run_command(spec, end) if spec.command else True
    return posted and ran


def drain(timeout_s: float) -> None:
    """Wait up to ``timeout_s`` in all for notifications still being sent (a worker about to exit)."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        with _lock:
            alive = [t for t in _sending if t.is_alive()]
        if not alive:
            return
        alive[0].join(max(0.0, deadline - time.monotonic()))


def run_command(spec: NotifySpec, end: JobEnd) -> bool:
    """Run the notify command (no shell) with the job's fields in its environment; kill its process group
    after ``spec.timeout_s``. Logs the outcome (a failure with its output's last lines); True if it exited 0."""
    name = spec.command[0]
    try:
        proc = subprocess.Popen(
            spec.command,
            env={**os.environ, **end.environment()},
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # its own group: a timeout kills everything it started
        )
    except OSError as exc:
        log.warning("job %d: notify command %s could not start: %s", end.job, name, exc.strerror or exc)
        return False
    try:
        output, _ = proc.communicate(timeout=spec.timeout_s)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.communicate()
        log.warning("job %d: notify command %s killed after %gs", end.job, name, spec.timeout_s)
        return False
    if proc.returncode != 0:
        url = os.environ.get(spec.url_env or "", "")  # the command may know the webhook too
        tail = redact(output.decode(errors="replace"), [url]).strip().splitlines()[-_OUTPUT_LINES:]
        shown = "".join(f"\n    {line}" for line in tail)
        log.warning("job %d: notify command %s exited %d%s", end.job, name, proc.returncode, shown)
        return False
    log.info("job %d: notify command %s done", end.job, name)
    return True


def post_webhook(spec: NotifySpec, end: JobEnd) -> bool:
    """POST the job's end to the URL in ``$url_env``, in ``spec.format``; log the outcome without the URL's
    path or query. True if the server answered 2xx/3xx."""
    assert spec.url_env is not None
    url = os.environ.get(spec.url_env, "")
    if not url:
        log.warning(
            "job %d: no webhook sent: $%s is not set in the worker's environment", end.job, spec.url_env
        )
        return False
    parts = urlsplit(url)
    shown = f"{parts.scheme}://{parts.hostname}/…"
    if parts.scheme not in ("http", "https") or not parts.hostname:
        log.warning("job %d: no webhook sent: $%s is not an http(s) URL", end.job, spec.url_env)
        return False
    target, body = webhook_request(spec.format, url, end)
    request = urllib.request.Request(
        target,
        data=json.dumps(body).encode(),
        headers={"Content-Type": "application/json", "User-Agent": "tuneq"},
        method="POST",
    )
    try:
        with urllib.request.urlopen(request, timeout=spec.timeout_s) as response:
            status = response.status
    except (urllib.error.URLError, OSError, ValueError) as exc:
        hidden = [url, parts.netloc, parts.path, parts.query]
        log.warning("job %d: webhook %s failed: %s", end.job, shown, redact(str(exc), hidden))
        return False
    log.info("job %d: webhook %s answered %d", end.job, shown, status)
    return True


def webhook_request(fmt: str, url: str, end: JobEnd) -> tuple[str, dict[str, Any]]:
    """Where to POST and the JSON body, by ``format``: ``json`` (tuneq's fields and ``text``), ``slack``
    (``{"text"}``: Slack, Mattermost, Discord's ``/slack`` URLs), ``ntfy`` (ntfy's JSON publishing: posted
    to the server's root with the topic, the URL's last path segment, in the body)."""
    if fmt == "slack":
        return url, {"text": end.text}
    if fmt == "ntfy":
        parts = urlsplit(url)
        root, _, topic = parts.path.rstrip("/").rpartition("/")
        ok = end.state == JobState.SUCCEEDED
        body = {
            "topic": topic,
            "title": f"tuneq: {end.name} {end.state}",
            "message": end.text,
            "tags": ["white_check_mark" if ok else "warning"],
            "priority": 3 if ok else 4,
        }
        return parts._replace(path=root + "/").geturl(), body
    return url, {"v": 1, **asdict(end), "text": end.text}
