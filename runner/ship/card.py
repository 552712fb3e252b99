"""The ship folder's ``README.md`` (a Hugging Face model card) and ``commands.txt``."""

from __future__ import annotations

import shlex
from pathlib import Path
from typing import Any

from runner.models.tiny import builtin_note
from runner.ship.evalmd import fidelity_sections
from runner.ship.modelfile import NUM_CTX_CAP, GgufChat
from runner.ship.usage import llama_cpp_commands, ollama_commands
from runner.spec.model import JobSpec


def commands(spec: JobSpec, gguf: str, lora: str | None, with_modelfile: bool = True) -> str:
    """Ready-to-paste lines for llama.cpp and Ollama, run inside the ship folder."""
    system = spec.template.system
    lines = ["# llama.cpp", *(command for _, command in llama_cpp_commands(gguf, system))]
    if lora:
        sys_option = f" -sys {shlex.quote(system)}" if system else ""
        lines += [
            "# the adapter alone, on the base model's own GGUF (not included here)",
            f"llama-cli -m ./BASE-MODEL.gguf --lora ./{lora} --jinja{sys_option}",
        ]
    if with_modelfile:
        lines += [
            "# Ollama (the Modelfile holds the chat template, the system prompt and the stop words)",
            *ollama_commands(spec.artifact_name),
        ]
    return "\n".join(lines) + "\n"


def prompt_section(
    spec: JobSpec, chat: GgufChat, num_ctx: int, no_modelfile: str | None, smoke: dict[str, Any] | None
) -> str:
    """What a receiver runs and what was tested: the template, the system prompt, the context, Ollama."""
    system = spec.template.system
    lines = [
        f"The GGUF carries its chat template (`tokenizer.chat_template`, template style "
        f"`{spec.template.style}`, EOS `{chat.eos}`): llama.cpp (`llama-cli`, `llama-server --jinja`) "
        "and llama-cpp-python prompt it as it was trained."
    ]
    if system:
        lines += [
            "",
            "Every training example had this system prompt. The embedded template writes it when a "
            "conversation has none, the `llama-cli` line passes it with `-sys`, and the Modelfile sets it "
            "as `SYSTEM`; a client that sends a system message of its own replaces it.",
            "",
            "```text",
            system,
            "```",
        ]
    base_ctx = f"{chat.context_length:,} tokens" if chat.context_length else "not stated in the GGUF"
    lines += [
        "",
        f"Context: the base model's is {base_ctx}; training used rows of at most "
        f"{spec.model.max_seq_length:,} tokens (`model.max_seq_length`), so the fine-tune has seen nothing "
        f"longer. Ollama's `num_ctx` is {num_ctx:,} (the base model's context, at most "
        f"{NUM_CTX_CAP:,} unless training used longer rows).",
    ]
    if smoke:
        results, without = smoke.get("results", []), smoke.get("without_system_prompt")
        tested = (
            f"Tested: the `{smoke.get('gguf', '').rsplit('/', 1)[-1]}` file answered {len(results)} smoke "
            f"prompt(s) through the embedded template ({sum(r['ok'] for r in results)} passed every check"
        )
        tested += ", with the system prompt)" if system else ")"
        if without is not None:
            tested += (
                f"; without the system prompt {sum(r['ok'] for r in without)} of {len(without)} passed "
                "(not required: the files above carry it)"
            )
        lines += ["", tested + "."]
    lines += [
        "",
        (
            "Ollama: the Modelfile's TEMPLATE writes the same prompt as the embedded template, checked on "
            "conversations of one and several turns, with and without a system prompt."
        )
        if no_modelfile is None
        else f"Ollama: no Modelfile is shipped, because {no_modelfile}. Import the GGUF with a TEMPLATE "
        "of your own only after checking it prompts the model as above.",
    ]
    return "## How to talk to it\n\n" + "\n".join(lines)


def model_card(
    spec: JobSpec,
    files: list[tuple[str, int]],
    train: dict[str, Any],
    data: dict[str, Any],
    fidelity: dict[str, Any] | None,
    command_text: str,
    prompting: str,
    loss_png: bool = False,
) -> str:
    """The model card: base model, data, template, hyperparameters, losses, how to prompt, fidelity, usage."""
    base = shown_base(spec.model.base)
    front = ["---", f"base_model: {base}", "tags: [gguf, llama.cpp, lora, tuneq]"]
    front += [f"license: {spec.export.license}"] if spec.export.license else []
    licence_note = (
        "" if spec.export.license else "\nLicense: not stated (set `export.license` in the job file)."
    )
    base_note = f"\n\n{note}" if (note := builtin_note(spec.model.base)) else ""
    rows = data.get("train", {}), data.get("eval", {})
    parts = [
        "\n".join([*front, "---"]),
        f"# {spec.artifact_name}\n\n{spec.description or ''}\n\nA LoRA fine-tune of `{base}` "
        f"made with tuneq, merged and exported to GGUF.{licence_note}{base_note}",
        "## Files\n\n| file | bytes |\n|---|---|\n" + "\n".join(f"| {n} | {b:,} |" for n, b in files),
        prompting,
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
        f"step, {_num(train.get('final_loss'))} at the last."
        + ("\n\n![training and eval loss against the step](loss.png)" if loss_png else ""),
    ]
    if fidelity:
        parts.append("## Fidelity\n\n" + fidelity_sections(fidelity, level=3))
    parts.append(f"## Use it\n\n```sh\n{command_text}```")
    return "\n\n".join(parts) + "\n"


def shown_base(base: str) -> str:
    """The base model as the card names it: a hub id or built-in as is, a local folder by its name only
    (the server's directories are nobody else's business)."""
    return Path(base).name if Path(base).expanduser().is_absolute() else base


def _settings(sections: dict[str, dict[str, Any]]) -> str:
    rows = [
        f"| {name}.{key} | {value} |" for name, values in sections.items() for key, value in values.items()
    ]
    return "| setting | value |\n|---|---|\n" + "\n".join(rows)


def _num(value: Any) -> str:
    return "—" if value is None else f"{value:.4f}"
