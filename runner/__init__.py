"""tuneq: queue, run and ship LoRA fine-tunes. Importing it has no side effects (the pipeline's
package loads the C++ runtime its native libraries need: :mod:`runner.pipeline`)."""
