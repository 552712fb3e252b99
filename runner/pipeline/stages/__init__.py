"""The stages, one module each, named as :data:`runner.core.stages.STAGE_NAMES` names them; each has one
``run(ctx) -> dict`` function (:mod:`runner.pipeline.run` chains them). What they share sits beside this
package, in runner/pipeline/."""
