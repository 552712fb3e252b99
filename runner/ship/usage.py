"""The commands that run a shipped GGUF: one list for the ship folder's ``commands.txt`` and the TUI."""

from __future__ import annotations

import hashlib
import re
import shlex
import unicodedata


def ollama_name(name: str) -> str:
    """``name`` as ``ollama create`` accepts it (lower-case ASCII letters, digits, '.', '_', '-').

    Accents are dropped ("Café" → "cafe"), other runs of characters become '-'; a name with no ASCII
    letter or digit (``日本語ジョブ``) becomes ``tuneq-`` and a short hash of it.
    """
    ascii_name = unicodedata.normalize("NFKD", name).encode("ascii", "ignore").decode().lower()
    slug = re.sub(r"[^a-z0-9._-]+", "-", ascii_name).strip("-._")
    return slug or "tuneq-" + hashlib.sha256(name.encode()).hexdigest()[:8]


def llama_cpp_commands(gguf: str, system: str | None = None) -> list[tuple[str, str]]:
    """(what it does, command) for llama.cpp, run in the folder that holds the file ``gguf``.

    ``--jinja``: the chat template embedded in the GGUF (the default of newer llama.cpp, named for older
    ones). ``system``: the job's system prompt for ``llama-cli -sys``; the embedded template writes it
    anyway where a conversation has none (``llama-server`` has no such option: its clients get it so).
    """
    local = shlex.quote(f"./{gguf}")
    sys_option = f" -sys {shlex.quote(system)}" if system else ""
    return [
        ("chat with llama.cpp", f"llama-cli -m {local} --jinja{sys_option}"),
        (
            "serve with llama.cpp (OpenAI API on :8080)",
            f"llama-server -m {local} --jinja --host 127.0.0.1 --port 8080",
        ),
    ]


def ollama_commands(artifact_name: str) -> list[str]:
    """Create the Ollama model from the folder's ``Modelfile``, then chat with it."""
    name = ollama_name(artifact_name)
    return [f"ollama create {name} -f Modelfile", f"ollama run {name}"]
