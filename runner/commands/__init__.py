"""What users ask of tuneq, as plain functions the CLI and the TUI both call: the queue's verbs
(:mod:`runner.commands.jobs`, exported here), staging a run directory (:mod:`runner.commands.staging`) and
``tuneq validate``'s checks (:mod:`runner.commands.validate`)."""

from runner.commands.jobs import (
    RetryPlan,
    bump_priority,
    cancel,
    job_events,
    load_all,
    plan_retry,
    remove,
    retry,
    retry_edited,
    runs_root,
    set_priority,
    submit,
    validation_rows,
)

__all__ = [
    "RetryPlan",
    "bump_priority",
    "cancel",
    "job_events",
    "load_all",
    "plan_retry",
    "remove",
    "retry",
    "retry_edited",
    "runs_root",
    "set_priority",
    "submit",
    "validation_rows",
]
