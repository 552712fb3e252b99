"""Where does llama.cpp's CUDA build crash when scoring a GGUF?

``python3 ppl_probe.py F16.gguf [Q4.gguf]`` runs every case in ``CASES``, each in its own process, and reruns
the first one that dies on a signal under cuda-gdb (on the GPU machine; it also debugs host code) to print
the native stack, the faulting address and the stack pointer. ``python3 ppl_probe.py FILE OPTIONS`` runs one
case; OPTIONS is a comma-separated subset of:

  load     only load the model (no scoring)     ngl0     no layers offloaded
  hide     CUDA hidden from llama.cpp           long     a row of two 512-token chunks
  verbose  llama-cpp-python's verbose=True      clog     llama.cpp's own C logger, not the Python callback
  nommap   read the file instead of mmap        spawned  as the fidelity stage: torch holds the GPU and a
  bare     no tuneq import (no stdcxx fix)               spawned child scores
  torch    import torch after loading
"""

import os
import shutil
import subprocess
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

CASES: tuple[tuple[str, str, dict[str, str]], ...] = (  # (file: "f16" or "q4", options, extra environment)
    ("f16", "bare,load", {}),
    ("f16", "bare,load,torch", {}),
    ("f16", "load,torch", {}),
    ("f16", "score", {}),
    ("f16", "score,long,ngl0", {}),
    ("f16", "score,hide", {}),
    ("f16", "score,spawned", {}),
    ("q4", "score", {}),
)
QUIET = ("llama_model_loader", "print_info", "load_tensors", "llama_kv", "load:", ".", "llama_context")


def case(gguf: Path, options: set[str]) -> None:
    """Load (and score one row of) ``gguf`` the way the fidelity stage does, varied by ``options``."""
    import faulthandler

    faulthandler.enable()
    if "hide" in options:
        os.environ["CUDA_VISIBLE_DEVICES"] = ""
    if (
        "bare" in options
    ):  # without tuneq's fix (runner/llamacpp/stdcxx.py): numpy, then llama_cpp, as before it
        import numpy  # noqa: F401
    else:
        import runner  # noqa: F401  (its import shares libstdc++ before llama_cpp loads)
    import ctypes

    import llama_cpp

    if "bare" not in options:
        from runner.pipeline.isolate import call_in_child
        from runner.pipeline.perplexity import Row, perplexity

    if "clog" in options:
        llama_cpp.llama_log_set(ctypes.cast(0, llama_cpp.llama_log_callback), ctypes.c_void_p(0))
    layers = 0 if "ngl0" in options else -1
    if "load" in options:
        llm = llama_cpp.Llama(
            model_path=str(gguf),
            n_ctx=512,
            n_gpu_layers=layers,
            use_mmap="nommap" not in options,
            verbose="verbose" in options,
        )
        print("loaded", llm.n_vocab(), flush=True)
        if "torch" in options:  # a C++ library loaded after llama.cpp's
            import torch

            print("torch", torch.ones(2).sum().item(), flush=True)
        return
    ids = [1000 + (i * 7919) % 20000 for i in range(1100 if "long" in options else 300)]
    rows = [Row(ids, [-100] * 100 + ids[100:])]
    if "spawned" in options:
        import torch

        held = torch.ones(1 << 28, device="cuda" if torch.cuda.is_available() else "cpu")
        print(call_in_child("perplexity", perplexity, gguf, rows, layers), float(held[0]), flush=True)
    else:
        print(perplexity(gguf, rows, layers), flush=True)


def main(files: dict[str, Path]) -> None:
    """Every case, with the native stack of the first that crashes."""
    debugged = False
    for kind, options, env in CASES:
        if kind not in files:
            continue
        argv = [sys.executable, __file__, str(files[kind]), options]
        run = subprocess.run(argv, capture_output=True, text=True, env={**os.environ, **env})
        lines = [x for x in (run.stdout + run.stderr).splitlines() if not x.startswith(QUIET)]
        print(f"== {kind} {options} {env or ''}: rc {run.returncode}\n" + "\n".join(lines[-6:]), flush=True)
        if run.returncode < 0 and not debugged and shutil.which("cuda-gdb"):
            debugged = True
            gdb = subprocess.run(
                ["cuda-gdb", "-q", "-batch", "-ex", "set pagination off", "-ex", "run", "-ex", "bt 12",
                 "-ex", "p $_siginfo._sifields._sigfault.si_addr", "-ex", "p $rsp", "-ex", "x/4i $pc",
                 "-ex", "info proc mappings", "--args", *argv],
                capture_output=True, text=True, timeout=400,
            )  # fmt: skip
            out = gdb.stdout.splitlines()
            start = next((i for i, x in enumerate(out) if "received signal" in x), max(0, len(out) - 60))
            maps = next((i for i, x in enumerate(out) if "Start Addr" in x), len(out))
            keep = out[start:maps] + [x for x in out[maps:] if "stack" in x or "heap" in x]
            print("-- cuda-gdb\n" + "\n".join(keep), flush=True)


if __name__ == "__main__":
    if len(sys.argv) == 3 and not sys.argv[2].endswith(".gguf"):
        case(Path(sys.argv[1]), set(sys.argv[2].split(",")))
    else:
        main(dict(zip(("f16", "q4"), map(Path, sys.argv[1:]), strict=False)))
