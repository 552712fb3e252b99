"""Ready-to-copy commands that take a finished GGUF from the server to a laptop and run it."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from runner.ship.reach import SshHost
from runner.ship.usage import llama_cpp_commands, ollama_commands


@dataclass(frozen=True)
class ShipCommand:
    """A labelled command (or file text) for the clipboard."""

    label: str
    text: str


def ship_commands(
    gguf: Path, model: str, host: SshHost, modelfile: str | None = None, system: str | None = None
) -> list[ShipCommand]:
    """Fetch the file with scp or rsync from ``host``; run it with llama.cpp or Ollama, as the ship folder's
    ``commands.txt`` does: ``model`` is the job's artifact name, ``system`` its system prompt.

    ``modelfile`` is the run's ``ship/Modelfile`` (it carries the chat template); without one, a minimal
    Modelfile leaves the template to Ollama's reading of the GGUF."""
    minimal = f"# {' && '.join(ollama_commands(model))}\nFROM ./{gguf.name}\n"
    return [
        ShipCommand("scp to your laptop", host.scp(str(gguf))),
        ShipCommand("rsync to your laptop (resumable)", host.rsync(str(gguf))),
        *(ShipCommand(label, command) for label, command in llama_cpp_commands(gguf.name, system)),
        ShipCommand("Ollama Modelfile", modelfile or minimal),
    ]
