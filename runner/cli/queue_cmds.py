"""Queue verbs: ``submit``, ``status``, ``show``, ``log``, ``cancel``, ``retry``, ``remove``, ``priority``,
``backup``, ``worker``, ``notify-test`` and ``daemon start|stop|status|install|uninstall``.

Each verb is a thin layer over :mod:`runner.commands` (shared with the TUI). Unknown ids and wrong
states print one line and exit 2; an unusable database prints one line and exits 1. ``--json`` shapes
are documented in docs/cli-json.md.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
import time
from collections.abc import Callable
from dataclasses import asdict
from pathlib import Path
from typing import Any

from runner import commands
from runner.cli import argtypes
from runner.cli.exitcodes import EXIT_FAILED, EXIT_OK, EXIT_USAGE
from runner.cli.queue_view import job_details, jobs_table
from runner.core.events import format_event, terminal_safe
from runner.core.jobstate import JobState
from runner.core.paths import state_dir
from runner.core.present import count, one_line, os_failure, stopped_ending
from runner.core.rundir import RunDir
from runner.core.workers import live_workers
from runner.spec import SpecError, load_spec
from runner.store import (
    JSON_VERSION,
    Job,
    JobError,
    Store,
    StoreError,
    StoreUnwritable,
    WorkerInfo,
    default_path,
    iso,
)
from runner.store.backup import backup
from runner.worker import daemon, notify, unit
from runner.worker.linger import linger_warning
from runner.worker.unit import UnitError

StoreHandler = Callable[[Store, argparse.Namespace], int]


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add the queue verbs to the ``tuneq`` parser."""
    p = sub.add_parser("submit", help="validate job files and queue them")
    p.add_argument("files", nargs="+", metavar="FILE")
    p.add_argument("--priority", type=argtypes.priority, default=0, help="higher runs first (default 0)")
    p.add_argument("--name", help="a display name instead of the job file's name")
    p.add_argument("--json", action="store_true", help="machine-readable output (docs/cli-json.md)")
    p.set_defaults(handler=_with_store(_submit))

    p = sub.add_parser("status", help="the queue as a table")
    p.add_argument("--json", action="store_true", help="machine-readable output (docs/cli-json.md)")
    p.set_defaults(handler=_with_store(_status))

    p = sub.add_parser("show", help="everything about one job")
    p.add_argument("id", type=argtypes.job_id)
    p.add_argument("--json", action="store_true", help="machine-readable output (docs/cli-json.md)")
    p.set_defaults(handler=_with_store(_show))

    p = sub.add_parser("log", help="a job's events as readable lines")
    p.add_argument("id", type=argtypes.job_id)
    p.add_argument("-f", "--follow", action="store_true", help="keep following until the job ends")
    p.set_defaults(handler=_with_store(_log))

    p = sub.add_parser("cancel", help="cancel queued or running jobs")
    p.add_argument("ids", nargs="+", type=argtypes.job_id, metavar="ID")
    p.set_defaults(handler=_with_store(_each(_cancel)))

    p = sub.add_parser(
        "retry",
        help="requeue failed, interrupted or cancelled jobs",
        description="Requeue jobs in their run directories: finished stages are reused, training resumes "
        "from its newest checkpoint. With --job, one job runs with an edited job file, and only the "
        "stages whose inputs changed run again (e.g. `tuneq retry 3 --job jobs/x.toml` after fixing a "
        "smoke prompt: training is not repeated).",
    )
    p.add_argument("ids", nargs="+", type=argtypes.job_id, metavar="ID")
    p.add_argument("--job", metavar="FILE", help="the edited job file (one ID only)")
    p.set_defaults(handler=_with_store(_retry))

    p = sub.add_parser("remove", help="forget finished jobs")
    p.add_argument("ids", nargs="+", type=argtypes.job_id, metavar="ID")
    p.add_argument("--artifacts", action="store_true", help="also delete their run directories (asks first)")
    p.add_argument("--yes", action="store_true", help="do not ask before deleting run directories")
    p.set_defaults(handler=_with_store(_remove))

    p = sub.add_parser("priority", help="change a job's priority")
    p.add_argument("id", type=argtypes.job_id)
    p.add_argument("priority", type=argtypes.priority)
    p.set_defaults(handler=_with_store(_priority))

    p = sub.add_parser("backup", help="copy the queue database safely, even while workers run")
    p.add_argument("path", type=Path, metavar="PATH", help="the new file to write (never overwritten)")
    p.set_defaults(handler=_backup)

    p = sub.add_parser("worker", help="run a worker in the foreground")
    p.add_argument("--extra", action="store_true", help="run beside the state directory's worker")
    p.add_argument(
        "--cluster",
        type=argtypes.cluster_address,
        metavar="HOST:PORT",
        help="run every job on a node of this Ray cluster (default: cluster.toml in the state directory)",
    )
    p.set_defaults(handler=_serve)

    p = sub.add_parser(
        "notify-test",
        help="send a test notification now, as the worker would at a job's end (docs/notify.md)",
    )
    p.add_argument(
        "file", nargs="?", type=Path, metavar="FILE", help="a job file with [notify] (default: notify.toml)"
    )
    p.set_defaults(handler=_notify_test)

    p = sub.add_parser(
        "daemon", help="run the worker detached: start | stop | status | install | uninstall (systemd unit)"
    )
    p.add_argument("action", choices=("start", "stop", "status", "install", "uninstall"))
    p.add_argument(
        "--print", action="store_true", help="install: print the unit file instead of installing it"
    )
    p.set_defaults(handler=_daemon)


def _with_store(fn: StoreHandler) -> Callable[[argparse.Namespace], int]:
    def handler(args: argparse.Namespace) -> int:
        try:
            with Store() as store:
                return fn(store, args)
        except SpecError as exc:
            print(exc, file=sys.stderr)
            return EXIT_USAGE
        except (JobError, StoreUnwritable) as exc:
            print(f"tuneq: {exc}", file=sys.stderr)
            return EXIT_USAGE
        except StoreError as exc:
            print(f"tuneq: {exc}", file=sys.stderr)
            return EXIT_FAILED
        except OSError as exc:  # the run directory of a submit: a full or read-only disk
            print(f"tuneq: {os_failure(exc)}", file=sys.stderr)
            return EXIT_USAGE

    return handler


def _each(action: Callable[[Store, int], str]) -> StoreHandler:
    """Apply ``action`` to every id; report each; exit 2 if any id failed."""

    def handler(store: Store, args: argparse.Namespace) -> int:
        code = EXIT_OK
        for job_id in args.ids:
            try:
                print(action(store, job_id))
            except JobError as exc:
                print(f"tuneq: {exc}", file=sys.stderr)
                code = EXIT_USAGE
        return code

    return handler


def _print_json(data: dict[str, Any]) -> None:
    print(json.dumps({"v": JSON_VERSION, **data}, indent=2))


def _submit(store: Store, args: argparse.Namespace) -> int:
    try:
        jobs = commands.submit(store, args.files, priority=args.priority, name=args.name)
    except SpecError as exc:
        if not args.json:
            raise
        _print_json({"jobs": [], "problems": [asdict(p) for p in exc.problems]})
        return EXIT_USAGE
    if args.json:
        _print_json({"jobs": [j.to_json() for j in jobs], "problems": []})
    else:
        for job in jobs:
            print(f"job {job.id} queued: {one_line(job.name)} (priority {job.priority})")
    if not live_workers(store.workers(), time.time()):
        print("no worker is running: start one with `tuneq daemon start`", file=sys.stderr)
    return EXIT_OK


def _status(store: Store, args: argparse.Namespace) -> int:
    jobs = store.list_jobs()
    if args.json:
        _print_json({"jobs": [j.to_json() for j in jobs], "workers": [w.to_json() for w in store.workers()]})
    elif jobs:
        print(jobs_table(jobs, time.time()))
    else:
        print("the queue is empty: add a job with `tuneq submit FILE`")
    return EXIT_OK


def _show(store: Store, args: argparse.Namespace) -> int:
    job = store.get(args.id)
    if args.json:
        run = RunDir(Path(job.run_dir))
        paths = {"events_path": str(run.events), "log_path": str(run.log)}
        _print_json({"job": job.to_json() | {"spec_text": store.spec_text(job.id)} | paths})
    else:
        print(job_details(job))
    return EXIT_OK


def _log(store: Store, args: argparse.Namespace) -> int:
    for event in commands.job_events(store, args.id, follow=args.follow):
        print(format_event(event), flush=True)
    job = store.get(args.id)
    if words := stopped_ending(job.state, job.reason):
        stamp = (iso(job.finished_at) or "")[11:19]
        print(f"{stamp:<8} {'-':<9} {terminal_safe(words)}")  # what the worker made of the pipeline's stop
    if not args.follow:
        return EXIT_OK
    return EXIT_OK if job.state is JobState.SUCCEEDED else EXIT_FAILED


def _cancel(store: Store, job_id: int) -> str:
    job = commands.cancel(store, job_id)
    if job.state is JobState.CANCELLED:
        return f"job {job_id} cancelled"
    return f"job {job_id}: cancel requested; the worker stops it"


def _retry(store: Store, args: argparse.Namespace) -> int:
    if args.job is None:
        return _each(_retry_one)(store, args)
    if len(args.ids) != 1:
        print("tuneq: retry --job takes one job id (the edited file is that job's)", file=sys.stderr)
        return EXIT_USAGE
    job, plan = commands.retry_edited(store, args.ids[0], args.job)
    print(f"job {job.id} queued again with {args.job}: {plan.describe()}")
    return EXIT_OK


def _retry_one(store: Store, job_id: int) -> str:
    job = commands.retry(store, job_id)
    return f"job {job.id} queued again (it resumes from {job.run_dir})"


def _remove(store: Store, args: argparse.Namespace) -> int:
    if args.artifacts and not args.yes and not _confirm(store, args.ids):
        print("nothing removed", file=sys.stderr)
        return EXIT_FAILED
    code = EXIT_OK
    for job_id in args.ids:
        try:
            print(_remove_one(store, job_id, args.artifacts))
        except JobError as exc:
            print(f"tuneq: {exc}", file=sys.stderr)
            code = EXIT_USAGE
        except OSError as exc:
            print(
                f"tuneq: job {job_id} removed, but its run directory was not fully deleted: {exc}",
                file=sys.stderr,
            )
            code = code or EXIT_FAILED
    return code


def _remove_one(store: Store, job_id: int, artifacts: bool) -> str:
    job, deleted = commands.remove(store, job_id, artifacts=artifacts)
    if not artifacts:
        return f"job {job.id} removed"
    if deleted is None:
        return f"job {job.id} removed; its run directory {job.run_dir} was already gone"
    shown = str(deleted) if Path(job.run_dir) == deleted else f"{deleted} (linked from {job.run_dir})"
    return f"job {job.id} removed and {shown} deleted"


def _confirm(store: Store, ids: list[int]) -> bool:
    dirs = [job.run_dir for job in _known(store, ids)]
    if not dirs:
        return True
    print("this deletes the run directories (checkpoints, models, GGUF files):", *dirs, sep="\n  ")
    try:
        answer = input("delete them? [y/N] ")
    except EOFError:
        return False
    return answer.strip().lower() in ("y", "yes")


def _known(store: Store, ids: list[int]) -> list[Job]:
    jobs = []
    for job_id in ids:
        try:
            jobs.append(store.get(job_id))
        except JobError:
            continue  # reported when the removal itself fails
    return jobs


def _priority(store: Store, args: argparse.Namespace) -> int:
    job = commands.set_priority(store, args.id, args.priority)
    print(f"job {job.id} priority {job.priority}")
    return EXIT_OK


def _backup(args: argparse.Namespace) -> int:
    source = default_path()
    if not args.path.parent.is_dir():
        print(f"tuneq: {args.path.parent} is not a directory: create it first", file=sys.stderr)
        return EXIT_USAGE
    try:
        jobs = backup(source, args.path)
    except FileExistsError:
        print(f"tuneq: {args.path} exists: name a new file for the backup", file=sys.stderr)
        return EXIT_USAGE
    except FileNotFoundError:
        print(f"tuneq: there is no queue database at {source} to back up", file=sys.stderr)
        return EXIT_USAGE
    except (StoreError, OSError) as exc:
        print(f"tuneq: {exc}", file=sys.stderr)
        return EXIT_FAILED
    print(f"backed up {source} ({count(jobs, 'job')}) to {args.path}")
    return EXIT_OK


def _daemon(args: argparse.Namespace) -> int:
    if args.action in ("install", "uninstall"):
        return _daemon_unit(args)
    if args.action == "start":
        try:
            with Store() as store:
                store.check_writable()  # else the worker would start and fail every turn
            state, started = daemon.start()
        except StoreUnwritable as exc:
            print(f"tuneq: {exc}", file=sys.stderr)
            return EXIT_USAGE
        except OSError as exc:  # the worker's log or pid file
            print(f"tuneq: cannot start the worker: {os_failure(exc)}", file=sys.stderr)
            return EXIT_USAGE
        except (StoreError, RuntimeError) as exc:
            print(f"tuneq: {exc}", file=sys.stderr)
            return EXIT_FAILED
        print(f"worker {'started' if started else 'already running'} (pid {state.pid}); log: {state.log}")
        _warn_linger()
        return EXIT_OK
    if args.action == "stop":
        before = daemon.status()
        after = daemon.stop()
        if after.running:
            print(f"tuneq: the worker (pid {after.pid}) is still stopping; see {after.log}", file=sys.stderr)
            return EXIT_FAILED
        print(f"worker (pid {before.pid}) stopped" if before.running else "no worker is running")
        return EXIT_OK
    state = daemon.status()
    others = [] if state.running else _workers_without_the_lock()
    if state.running:
        print(f"worker running (pid {state.pid}); log: {state.log}")
    elif others:
        where = ", ".join(f"pid {w.pid} on {w.host}" for w in others)
        print(
            f"{count(len(others), 'worker')} running without this state directory's lock (--extra or another host): {where}"
        )
    else:
        print("no worker is running")
    if (unit_state := unit.unit_state()) is not None:
        print(f"systemd unit {unit.UNIT_NAME}: {unit_state}")
    if state.running:
        _warn_linger()
    return EXIT_OK if state.running or others else EXIT_FAILED


def _workers_without_the_lock() -> list[WorkerInfo]:
    """The queue's live workers (:func:`live_workers`) when none holds the state directory's lock: ones
    started with ``--extra`` or on another host sharing the queue. None when the queue does not exist."""
    if not default_path().exists():
        return []
    try:
        with Store() as store:
            return live_workers(store.workers(), time.time())
    except StoreError:
        return []


def _daemon_unit(args: argparse.Namespace) -> int:
    """``daemon install [--print]`` and ``daemon uninstall``."""
    try:
        if args.print:
            print(unit.current_unit(), end="")
            return EXIT_OK
        lines = daemon.install() if args.action == "install" else daemon.uninstall()
    except (UnitError, RuntimeError) as exc:
        print(f"tuneq: {exc}", file=sys.stderr)
        return EXIT_FAILED
    except OSError as exc:
        print(f"tuneq: {exc.filename or ''}: {exc.strerror or exc}", file=sys.stderr)
        return EXIT_FAILED
    for line in lines:
        print(line, file=sys.stderr if line.startswith("warning:") else sys.stdout)
    return EXIT_OK


def _notify_test(args: argparse.Namespace) -> int:
    """Send a made-up job end through the job file's ``[notify]`` table (else ``notify.toml``)."""
    try:
        spec = load_spec(args.file).spec if args.file else None
        table = spec.notify if spec is not None and spec.notify_given else notify.read_queue_default()
    except SpecError as exc:
        print(exc, file=sys.stderr)
        return EXIT_USAGE
    if table is None or not (table.command or table.url_env):
        where = f"{args.file} has no [notify] table and " if args.file else ""
        print(
            f"tuneq: nothing to send: {where}{state_dir() / notify.NOTIFY_FILE} sets no notifier",
            file=sys.stderr,
        )
        return EXIT_USAGE
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("%(message)s"))
    notify.log.addHandler(handler)
    notify.log.setLevel(logging.INFO)
    try:
        return EXIT_OK if notify.send_test(table) else EXIT_FAILED
    finally:
        notify.log.removeHandler(handler)


def _warn_linger() -> None:
    if warning := linger_warning():
        print(f"warning: {warning}", file=sys.stderr)


def _serve(args: argparse.Namespace) -> int:
    """``tuneq worker``: imported here so the other verbs start without the worker's dependencies."""
    from runner.worker.loop import serve

    return serve(extra=args.extra, cluster=args.cluster)
