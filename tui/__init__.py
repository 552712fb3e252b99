"""``tuneq tui``: the terminal UI over the queue store and the run directories.

It reads the store and the files under each run directory and writes intents (submit, cancel, retry,
priority) through :mod:`runner.commands`, exactly as the CLI does; it never trains, converts or signals.
Entry point: :func:`tui.app.run`.
"""
