"""The pipeline: one run directory in, artifacts and events out. Knows nothing of the queue or the TUI.

Stages, in order: data → train → lora → merged → gguf → quantize → smoke → report. Each is a module with
one ``run(ctx) -> dict`` function; :mod:`runner.pipeline.run` chains them, reuses stages whose marker
matches, and turns failures into an ``error`` event and a non-zero exit.
"""
