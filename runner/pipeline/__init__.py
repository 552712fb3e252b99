"""The pipeline: one run directory in, artifacts and events out. Knows nothing of the queue or the TUI.

The stages run in the order :data:`runner.core.stages.STAGE_NAMES` gives, then the report. Each is a
module of :mod:`runner.pipeline.stages` with one ``run(ctx) -> dict`` function; :mod:`runner.pipeline.run`
chains them, reuses stages whose marker matches, and turns failures into an ``error`` event and a non-zero
exit. The other modules here are what the stages share.

Importing this package puts the system libstdc++ in the global symbol scope (:mod:`runner.llamacpp.stdcxx`) before
any stage can import llama_cpp or torch: every process that runs a stage imports it first (spawned
children too, to unpickle their target). The CLI, the TUI and the worker never import it.
"""

from runner.llamacpp.stdcxx import share_libstdcxx

share_libstdcxx()
