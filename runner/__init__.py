"""tuneq: queue, run and ship LoRA fine-tunes."""

from runner.stdcxx import share_libstdcxx

# Before anything can import llama_cpp: every process that runs tuneq code imports this package first
# (spawned children too, to unpickle their target), so llama.cpp and torch share one libstdc++.
share_libstdcxx()
