"""The ship folder's ``README.md`` (a Hugging Face model card) and ``commands.txt``."""

from __future__ import annotations

from typing import Any

from runner.ship.evalmd import fidelity_sections
from runner.ship.usage import llama_cpp_commands, ollama_commands
from runner.spec.model import JobSpec


def commands(spec: JobSpec, gguf: str, lora: str | None) -> str:
    """Ready-to-paste lines for llama.cpp and Ollama, run inside the ship folder."""
    lines = ["# llama.cpp", *(command for _, command in llama_cpp_commands(gguf))]
    if lora:
        lines += [
            "# the adapter alone, on the base model's own GGUF (not included here)",
            f"llama-cli -m ./BASE-MODEL.gguf --lora ./{lora} -cnv",
        ]
    lines += [
        "# Ollama (the Modelfile holds the chat template and stop words)",
        *ollama_commands(spec.artifact_name),
    ]
    return "\n".join(lines) + "\n"


def model_card(
    spec: JobSpec,
    files: list[tuple[str, int]],
    train: dict[str, Any],
    data: dict[str, Any],
    fidelity: dict[str, Any] | None,
    command_text: str,
) -> str:
    """The model card: base model, data, template, hyperparameters, losses, fidelity, usage."""
    front = ["---", f"base_model: {spec.model.base}", "tags: [gguf, llama.cpp, lora, tuneq]"]
    front += [f"license: {spec.export.license}"] if spec.export.license else []
    licence_note = (
        "" if spec.export.license else "\nLicense: not stated (set `export.license` in the job file)."
    )
    rows = data.get("train", {}), data.get("eval", {})
    parts = [
        "\n".join([*front, "---"]),
        f"# {spec.artifact_name}\n\n{spec.description or ''}\n\nA LoRA fine-tune of `{spec.model.base}` "
        f"made with tuneq, merged and exported to GGUF.{licence_note}",
        "## Files\n\n| file | bytes |\n|---|---|\n" + "\n".join(f"| {n} | {b:,} |" for n, b in files),
        f"## Data\n\n`{spec.data.source}` (format {data.get('format')}): {rows[0].get('rows')} training rows "
        f"({rows[0].get('tokens')} tokens), {rows[1].get('rows', 0)} held out. Template style "
        f"`{spec.template.style}`; loss on the answers only.",
        "## Training\n\n"
        + _settings(
            {
                "model": spec.model.model_dump(include={"max_seq_length", "load_in_4bit"}),
                "lora": spec.lora.model_dump(),
                "train": spec.train.model_dump(),
            }
        ),
        f"Steps: {train.get('steps')}; training loss {_num(train.get('first_loss'))} at the first logged "
        f"step, {_num(train.get('final_loss'))} at the last.",
    ]
    if fidelity:
        parts.append("## Fidelity\n\n" + fidelity_sections(fidelity, level=3))
    parts.append(f"## Use it\n\n```sh\n{command_text}```")
    return "\n\n".join(parts) + "\n"


def _settings(sections: dict[str, dict[str, Any]]) -> str:
    rows = [
        f"| {name}.{key} | {value} |" for name, values in sections.items() for key, value in values.items()
    ]
    return "| setting | value |\n|---|---|\n" + "\n".join(rows)


def _num(value: Any) -> str:
    return "—" if value is None else f"{value:.4f}"
