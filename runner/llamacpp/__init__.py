"""llama.cpp for tuneq: its converter scripts taken from the llama-cpp-python sdist at install time
(:mod:`runner.llamacpp.converter`, ``python -m runner.llamacpp install``), the C++ runtime rule for loading
it (:mod:`runner.llamacpp.stdcxx`) and the GPU check (:mod:`runner.llamacpp.gpucheck`)."""
