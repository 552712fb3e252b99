"""``python -m runner.llamacpp check-gpu``: the tiny model as a GGUF runs in llama.cpp with every layer on
the GPU (the last step of ``just setup`` on a CUDA machine)."""

from __future__ import annotations

import re
import subprocess
import sys
import tempfile
from pathlib import Path

from runner.llamacpp.converter import converter_script
from runner.models.resolve import resolve_base
from runner.models.tiny import TINY_LLAMA

_OFFLOADED = re.compile(r"offloaded (\d+)/(\d+) layers to GPU")
_DEVICE = re.compile(r"using device (\S+) \(([^)]*)\)")
# Run in a child: llama.cpp logs through llama-cpp-python's callback to stderr, and a crash stays there.
_LOAD = """
import sys
from runner.llamacpp.stdcxx import share_libstdcxx
share_libstdcxx()
from llama_cpp import Llama
llm = Llama(model_path=sys.argv[1], n_gpu_layers=-1, n_ctx=256, seed=0, verbose=True)
print(repr(llm("The", max_tokens=4)["choices"][0]["text"]))
"""


class GpuCheckFailed(RuntimeError):
    """The tiny GGUF did not run with all its layers on the GPU."""


def tiny_gguf(dest: Path) -> Path:
    """The built-in tiny model converted to an f16 GGUF in ``dest``."""
    out = dest / "tiny-f16.gguf"
    converted = subprocess.run(
        [
            sys.executable,
            str(converter_script()),
            resolve_base(TINY_LLAMA),
            "--outtype",
            "f16",
            "--outfile",
            str(out),
        ],
        capture_output=True,
        text=True,
    )
    if converted.returncode != 0:
        raise GpuCheckFailed(f"converting the tiny model failed: {converted.stderr.strip()[-500:]}")
    return out


def check_gpu() -> str:
    """Load the tiny GGUF with ``n_gpu_layers=-1`` and generate; a one-line summary, or raise."""
    with tempfile.TemporaryDirectory() as tmp:
        ran = subprocess.run(
            [sys.executable, "-c", _LOAD, str(tiny_gguf(Path(tmp)))], capture_output=True, text=True
        )
    if ran.returncode != 0:
        raise GpuCheckFailed(f"loading the tiny GGUF failed: {ran.stderr.strip()[-800:]}")
    offloaded = _OFFLOADED.search(ran.stderr)
    if offloaded is None:
        raise GpuCheckFailed("llama.cpp put no layer on a GPU (is llama-cpp-python built with CUDA?)")
    done, total = int(offloaded[1]), int(offloaded[2])
    if done != total:
        raise GpuCheckFailed(f"llama.cpp put only {done} of the tiny GGUF's {total} layers on the GPU")
    device = _DEVICE.search(ran.stderr)
    where = f"{device[1]} ({device[2]})" if device else "the GPU"
    return f"llama.cpp ran the tiny GGUF with {done}/{total} layers on {where}: {ran.stdout.strip()}"
