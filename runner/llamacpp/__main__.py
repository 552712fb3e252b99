"""``python -m runner.llamacpp install``: extract llama.cpp's converter from the llama-cpp-python sdist."""

import sys

from runner.llamacpp import install

if sys.argv[1:] != ["install"]:
    sys.exit("usage: python -m runner.llamacpp install")
print(f"llama.cpp converter in {install()}")
