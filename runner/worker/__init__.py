"""The worker: claims queued jobs, runs their pipelines through a backend and records how they end.

:mod:`~runner.worker.loop` is the loop and its signals, :mod:`~runner.worker.steps` its steps,
:mod:`~runner.worker.settle` the one place a run's end is decided and recorded,
:mod:`~runner.worker.daemon` the detached variant.
"""
