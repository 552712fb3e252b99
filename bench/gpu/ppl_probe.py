"""Where does llama.cpp's CUDA build crash when scoring a GGUF? ``python3 ppl_probe.py FILE.gguf``

Each case runs in its own process. A case that dies on a signal runs again under cuda-gdb (on the GPU
machine; it also debugs host code), which prints the native stack of the crashing thread.
"""

import os
import shutil
import subprocess
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

CASES = {  # name: (row length, gpu_layers, hide CUDA)
    "one-chunk-gpu": (300, -1, False),
    "two-chunks-gpu": (1100, -1, False),
    "one-chunk-ngl0": (300, 0, False),
    "two-chunks-ngl0": (1100, 0, False),
    "two-chunks-cpu": (1100, 0, True),
    # as in the fidelity stage: torch holds the GPU, a spawned child scores
    "spawned-after-torch": (300, -1, False),
}
QUIET = ("llama_model_loader", "print_info", "load_tensors", "llama_kv", "load:", ".", "llama_context")


def case(gguf: Path, name: str) -> None:
    """Score one row of ``CASES[name]``'s length the way the fidelity stage does."""
    import faulthandler

    faulthandler.enable()
    length, layers, hide = CASES[name]
    if hide:
        os.environ["CUDA_VISIBLE_DEVICES"] = ""
    from runner.pipeline.isolate import call_in_child
    from runner.pipeline.perplexity import Row, perplexity

    ids = [1000 + (i * 7919) % 20000 for i in range(length)]
    rows = [Row(ids, [-100] * 100 + ids[100:])]
    if name == "spawned-after-torch":
        import torch

        held = torch.ones(1 << 28, device="cuda" if torch.cuda.is_available() else "cpu")
        print(call_in_child("perplexity", perplexity, gguf, rows, layers), float(held[0]), flush=True)
    else:
        print(perplexity(gguf, rows, layers), flush=True)


def main(gguf: Path) -> None:
    """Every case, with the native stack of any that crashes."""
    for name in CASES:
        run = subprocess.run([sys.executable, __file__, str(gguf), name], capture_output=True, text=True)
        lines = [x for x in (run.stdout + run.stderr).splitlines() if not x.startswith(QUIET)]
        print(f"== {name}: rc {run.returncode}\n" + "\n".join(lines[-20:]), flush=True)
        if run.returncode < 0 and shutil.which("cuda-gdb"):
            gdb = subprocess.run(
                ["cuda-gdb", "-q", "-batch", "-ex", "set pagination off", "-ex", "run", "-ex", "bt 40",
                 "-ex", "info sharedlibrary", "--args", sys.executable, __file__, str(gguf), name],
                capture_output=True, text=True, timeout=400,
            )  # fmt: skip
            out = [x for x in gdb.stdout.splitlines() if not x.startswith(QUIET) and "New Thread" not in x]
            start = next((i for i, x in enumerate(out) if "received signal" in x), max(0, len(out) - 80))
            print(f"-- cuda-gdb {name}\n" + "\n".join(out[start : start + 80]), flush=True)


if __name__ == "__main__":
    if len(sys.argv) > 2:
        case(Path(sys.argv[1]), sys.argv[2])
    else:
        main(Path(sys.argv[1]))
