"""The errors a backend raises: a one-line reason a job cannot run (no engine, no image), or cannot run yet."""


class BackendError(OSError):
    """A user-facing, one-line message the worker records as the job's failure reason.

    An ``OSError``, so code that already handles a pipeline that cannot start handles this too.
    """


class BackendBusy(BackendError):
    """Nothing could take the job just now (no cluster node started it in time): the worker records it
    interrupted, so it is requeued within its retries instead of failing."""
