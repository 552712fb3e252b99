"""tuneq: queue, run and ship LoRA fine-tunes."""
