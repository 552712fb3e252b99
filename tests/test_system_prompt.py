"""A ``[template] system`` prompt the template cannot carry is refused, at validate and in the data stage,
never silently dropped; one it can carry becomes the embedded template's default."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import ROOT

from runner.dataset.formats import Example, Message
from runner.dataset.read import DataError
from runner.dataset.templates import (
    carries_system,
    chat_template_for,
    r1_inference_template,
    tokenize_example,
)
from runner.models.resolve import resolve_base
from runner.spec.model import TemplateSpec

NO_SYSTEM_ROLE = (  # Gemma-like: a system message raises (turns render alike in training and prompting)
    "{{ bos_token }}{% for m in messages %}{% if m['role'] == 'system' %}"
    "{{ raise_exception('System role not supported') }}{% endif %}"
    "<start_of_turn>{{ m['role'] }}\n{{ m['content'] }}<end_of_turn>\n{% endfor %}"
    "{% if add_generation_prompt %}<start_of_turn>assistant\n{% endif %}"
)
DROPS_SYSTEM = (
    "{% for m in messages if m['role'] != 'system' %}<|{{ m['role'] }}|>{{ m['content'] }}{% endfor %}"
    "{% if add_generation_prompt %}<|assistant|>{% endif %}"
)


def validate(job: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "runner", "validate", str(job)], capture_output=True, text=True, timeout=120
    )


@pytest.fixture
def model_without_system_role(tmp_path: Path) -> Path:
    """The tiny model's files with a chat template that has no system role."""
    model = tmp_path / "model"
    shutil.copytree(resolve_base("tuneq:tiny-llama"), model)
    (model / "chat_template.jinja").write_text(NO_SYSTEM_ROLE)
    return model


def job(tmp_path: Path, base: Path | str, template: str) -> Path:
    path = tmp_path / "job.toml"
    data = ROOT / "jobs" / "data" / "capitals-json.jsonl"
    path.write_text(
        f'name = "j"\n[model]\nbase = "{base}"\n[data]\nsource = "{data}"\nformat = "messages"\n'
        f"[template]\n{template}\n"
    )
    return path


def test_validate_refuses_a_system_prompt_the_models_template_cannot_carry(
    tmp_path: Path, model_without_system_role: Path
) -> None:
    done = validate(job(tmp_path, model_without_system_role, 'style = "chat"\nsystem = "Be brief."'))
    assert done.returncode == 2 and "Traceback" not in done.stderr, done.stderr
    (line,) = done.stderr.strip().splitlines()
    assert line.startswith(
        f"{tmp_path / 'job.toml'}:9: template.system: the model's chat template has no system"
    )
    assert "remove template.system, or use template.style = 'r1' or 'alpaca'" in line
    # the same model without a system prompt, or with a style that carries one, is fine
    assert validate(job(tmp_path, model_without_system_role, 'style = "chat"')).returncode == 0
    assert validate(job(tmp_path, model_without_system_role, 'style = "r1"\nsystem = "x"')).returncode == 0


def test_validate_refuses_a_custom_prompt_without_the_system_field(tmp_path: Path) -> None:
    template = (
        'style = "custom"\nsystem = "Be brief."\nprompt = "Q: {prompt}\\nA: "\ncompletion = "{response}"'
    )
    done = validate(job(tmp_path, "tuneq:tiny-llama", template))
    assert done.returncode == 2 and "template.system: template.prompt has no {system} field" in done.stderr
    fixed = template.replace("Q: {prompt}", "{system}\\nQ: {prompt}")
    assert validate(job(tmp_path, "tuneq:tiny-llama", fixed)).returncode == 0, done.stderr


def test_the_data_stage_refuses_system_messages_a_template_drops_or_raises_on() -> None:
    assert not carries_system(NO_SYSTEM_ROLE) and not carries_system(DROPS_SYSTEM)
    example = Example((Message("system", "Be brief."), Message("user", "Hi"), Message("assistant", "Hello")))

    class Tok:
        chat_template = DROPS_SYSTEM

    with pytest.raises(DataError, match="has no system role, so system messages would be dropped"):
        tokenize_example(example, TemplateSpec(style="chat"), Tok(), 64)


def test_the_embedded_template_writes_the_system_prompt_when_a_conversation_has_none() -> None:
    from llama_cpp.llama_chat_format import Jinja2ChatFormatter

    system = "Line one\nline 'two' \\ \"three\" {{ four }} 日本 😀"
    for style in ("r1", "alpaca"):
        spec = TemplateSpec(style=style, system=system)  # type: ignore[arg-type]
        template = chat_template_for(spec, _NoBos())
        render = Jinja2ChatFormatter(template, "</s>", "<s>")
        question = {"role": "user", "content": "Hi"}
        default = render(messages=[question]).prompt  # type: ignore[list-item]
        assert system in default
        explicit = render(messages=[{"role": "system", "content": system}, question]).prompt  # type: ignore[list-item]
        other = render(messages=[{"role": "system", "content": "Other."}, question]).prompt  # type: ignore[list-item]
        assert default == explicit and system not in other and "Other." in other
    assert (
        chat_template_for(TemplateSpec(style="r1"), _NoBos()) == r1_inference_template()
    )  # no prompt, no default


class _NoBos:
    """A tokenizer that starts no row with BOS (what chat_template_for asks of one)."""

    bos_token_id = None

    def __call__(self, text: str) -> dict[str, list[int]]:
        return {"input_ids": [5]}
