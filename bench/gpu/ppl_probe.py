"""Where does llama.cpp's CUDA build crash when scoring? Each case runs in its own process with faulthandler."""

import faulthandler
import os
import subprocess
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
faulthandler.enable()
GGUF = Path("/tmp/probe/f16.gguf")


def case(name: str) -> None:
    import llama_cpp
    import numpy as np

    from runner.pipeline.perplexity import Row, perplexity

    ids = list(range(1000, 1300))
    rows = [Row(ids, [-100] * 100 + ids[100:])]
    if name == "ppl-gpu":
        print(perplexity(GGUF, rows, -1))
    elif name == "ppl-cpu":
        print(perplexity(GGUF, rows, 0))
    elif name in ("last-only", "two-outputs"):
        llm = llama_cpp.Llama(
            model_path=str(GGUF), n_ctx=512, n_batch=512, n_ubatch=512, n_gpu_layers=-1, verbose=True
        )
        batch = llama_cpp.llama_batch_init(512, 0, 1)
        batch.n_tokens = len(ids)
        for i, t in enumerate(ids):
            batch.token[i], batch.pos[i], batch.n_seq_id[i] = t, i, 1
            batch.seq_id[i][0] = 0
            batch.logits[i] = i == len(ids) - 1 or (name == "two-outputs" and i == 150)
        print("decode", llama_cpp.llama_decode(llm.ctx, batch), flush=True)
        out = llama_cpp.llama_get_logits_ith(llm.ctx, len(ids) - 1)
        print("logits", np.ctypeslib.as_array(out, shape=(llm.n_vocab(),))[:3], flush=True)
    elif name == "generate":
        llm = llama_cpp.Llama(model_path=str(GGUF), n_ctx=512, n_gpu_layers=-1, verbose=False)
        print(llm.create_completion("hello", max_tokens=8))


if __name__ == "__main__":
    if len(sys.argv) > 1:
        case(sys.argv[1])
        sys.exit(0)
    from runner.llamacpp import converter_script
    from runner.models.resolve import resolve_base

    GGUF.parent.mkdir(parents=True, exist_ok=True)
    subprocess.run(
        [
            sys.executable,
            str(converter_script()),
            resolve_base("tuneq:tiny-r1-qwen"),
            "--outtype",
            "f16",
            "--outfile",
            str(GGUF),
        ],
        check=True,
        capture_output=True,
    )
    for name in ("generate", "last-only", "two-outputs", "ppl-gpu", "ppl-cpu"):
        r = subprocess.run(
            [sys.executable, __file__, name], capture_output=True, text=True, env=dict(os.environ)
        )
        lines = [
            x
            for x in (r.stdout + r.stderr).splitlines()
            if not x.startswith(
                (
                    "llama_model_loader",
                    "print_info",
                    "load_tensors",
                    "llama_context",
                    "llama_kv",
                    "load:",
                    ".",
                )
            )
        ]
        print(f"== {name}: rc {r.returncode}\n" + "\n".join(lines[-25:]), flush=True)
