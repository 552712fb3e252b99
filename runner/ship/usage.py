"""The commands that run a shipped GGUF: one list for the ship folder's ``commands.txt`` and the TUI."""

from __future__ import annotations

import shlex


def ollama_name(artifact_name: str) -> str:
    """The model name for ``ollama create`` (Ollama wants lower case)."""
    return artifact_name.lower()


def llama_cpp_commands(gguf: str) -> list[tuple[str, str]]:
    """(what it does, command) for llama.cpp, run in the folder that holds the file ``gguf``."""
    local = shlex.quote(f"./{gguf}")
    return [
        ("chat with llama.cpp", f"llama-cli -m {local} -cnv"),
        (
            "serve with llama.cpp (OpenAI API on :8080)",
            f"llama-server -m {local} --host 127.0.0.1 --port 8080",
        ),
    ]


def ollama_commands(artifact_name: str) -> list[str]:
    """Create the Ollama model from the folder's ``Modelfile``, then chat with it."""
    name = ollama_name(artifact_name)
    return [f"ollama create {name} -f Modelfile", f"ollama run {name}"]
