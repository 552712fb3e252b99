"""Where a job's pipeline runs: a local child process or a container. See :mod:`runner.backends.base`."""
