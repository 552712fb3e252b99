"""The exit codes of every ``tuneq`` verb (README: "When something goes wrong")."""

EXIT_OK = 0  # success
EXIT_FAILED = 1  # a job, a check or a transfer failed
EXIT_USAGE = 2  # bad input: a job file, an unknown id, a wrong state, a read-only or full disk
EXIT_INTERRUPTED = 130  # Ctrl-C
