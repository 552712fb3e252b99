"""``python -m runner.llamacpp install``: extract llama.cpp's converter from the llama-cpp-python sdist.
``python -m runner.llamacpp check-gpu``: a tiny GGUF runs with every layer on the GPU (exit 1 if not)."""

import sys

from runner.llamacpp.converter import install

match sys.argv[1:]:
    case ["install"]:
        print(f"llama.cpp converter in {install()}")
    case ["check-gpu"]:
        from runner.llamacpp.gpucheck import GpuCheckFailed, check_gpu

        try:
            print(check_gpu())
        except GpuCheckFailed as exc:
            sys.exit(f"check-gpu: {exc}")
    case _:
        sys.exit("usage: python -m runner.llamacpp install | check-gpu")
