"""The job queue's store: the one SQLite database that the CLI, the worker and the TUI share.

Read jobs with ``Store().list_jobs()`` / ``get(id)``; write intents with ``submit``, ``request_cancel``,
``retry``, ``set_priority``, ``remove`` (or through :mod:`runner.commands`, which the CLI uses too).
"""

from runner.store.errors import (
    Fenced,
    JobError,
    JobNotFound,
    SchemaTooNew,
    StateConflict,
    StoreError,
    StoreLocked,
    StoreUnwritable,
    WrongState,
)
from runner.store.models import JSON_VERSION, Attempt, Job, NewJob, Owner, Progress, WorkerInfo, iso
from runner.store.schema import SCHEMA_VERSION
from runner.store.store import Store, default_path

__all__ = [
    "JSON_VERSION",
    "SCHEMA_VERSION",
    "Attempt",
    "Fenced",
    "Job",
    "JobError",
    "JobNotFound",
    "NewJob",
    "Owner",
    "Progress",
    "SchemaTooNew",
    "StateConflict",
    "Store",
    "StoreError",
    "StoreLocked",
    "StoreUnwritable",
    "WorkerInfo",
    "WrongState",
    "default_path",
    "iso",
]
