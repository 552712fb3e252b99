"""The errors a backend raises: a one-line reason a job cannot run (no engine, no image)."""


class BackendError(OSError):
    """A user-facing, one-line message the worker records as the job's failure reason.

    An ``OSError``, so code that already handles a pipeline that cannot start handles this too.
    """
