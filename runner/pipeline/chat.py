"""A conversation with a tested GGUF, for the TUI's Chat tab: ``python -m runner.pipeline.chat GGUF``.

Loaded once the way the smoke stage loads it (every layer on the GPU when there is one), then asked the
way the smoke stage asks (:func:`runner.pipeline.stages.smoke.generate`: the embedded chat template, greedy,
``max_tokens`` bounded), so what a user tries over SSH is what was tested. One JSON line in on stdin per
turn, ``{"messages": [{"role": ..., "content": ...}, ...]}``; one JSON line out per turn,
``{"answer", "finish_reason", "completion_tokens", "tokens_per_s"}`` or ``{"error"}``. The first line out,
``{"ready": true}``, says the model is loaded (or ``{"error"}`` that it could not be). It runs in a process
of its own, so the TUI never loads llama.cpp.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from typing import Any, TextIO

from runner.pipeline.stages.smoke import generate


def serve(gguf: str, n_ctx: int, max_tokens: int, lines: TextIO, out: TextIO) -> None:
    """Answer each conversation read from ``lines`` until it ends."""
    from llama_cpp import Llama

    def say(reply: dict[str, Any]) -> None:
        out.write(json.dumps(reply, ensure_ascii=False) + "\n")
        out.flush()

    try:
        llm = Llama(
            model_path=gguf,
            n_ctx=n_ctx,
            n_threads=os.cpu_count() or 1,
            n_gpu_layers=-1,
            seed=0,
            verbose=False,
        )
    except (ValueError, OSError) as exc:
        say({"error": f"cannot load {gguf}: {exc}"})
        return
    say({"ready": True})
    for line in lines:
        try:
            messages = json.loads(line)["messages"]
            say(generate(llm, messages, max_tokens, n_ctx))
        except (ValueError, KeyError, TypeError, RuntimeError) as exc:
            say({"error": str(exc)})


def main() -> None:
    """The child's entry point."""
    parser = argparse.ArgumentParser(prog="python -m runner.pipeline.chat")
    parser.add_argument("gguf")
    parser.add_argument("--n-ctx", type=int, default=2048)
    parser.add_argument("--max-tokens", type=int, default=256)
    args = parser.parse_args()
    serve(args.gguf, args.n_ctx, args.max_tokens, sys.stdin, sys.stdout)


if __name__ == "__main__":
    main()
