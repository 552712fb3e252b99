"""Job-file validation: every bad-input class gets a located, actionable message and exit code 2."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from runner.commands.validate import validate_file
from runner.llamacpp.converter import convertible_architectures
from runner.spec import SpecError, load_spec, parse_spec

ROOT = Path(__file__).resolve().parent.parent
DEMO = ROOT / "jobs" / "demo-tiny.toml"
MINIMAL = """\
name = "t"
[model]
base = "tuneq:tiny-llama"
[data]
source = "rows.jsonl"
"""


CHATML = (
    "{% for m in messages %}{{ '<|im_start|>' + m['role'] + '\\n' + m['content'] + '<|im_end|>\\n' }}{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}{% endif %}"
)


def problems(text: str) -> list[str]:
    with pytest.raises(SpecError) as info:
        parse_spec(text, "job.toml")
    return [str(p) for p in info.value.problems]


def test_every_shipped_job_file_validates() -> None:
    for path in sorted((ROOT / "jobs").glob("*.toml")):
        assert load_spec(path).spec.name


def test_syntax_error_names_the_line() -> None:
    [msg] = problems(MINIMAL + "\n[train]\nlearning_rate = = 2\n")
    assert msg.startswith("job.toml:8:") and "TOML syntax error" in msg


def test_unknown_key_suggests_the_right_one_with_its_line() -> None:
    [msg] = problems(MINIMAL + "[train]\nlearnig_rate = 1e-4\n")
    assert "job.toml:7: train.learnig_rate: unknown key" in msg
    assert "did you mean 'learning_rate'?" in msg


def test_unknown_table_lists_valid_keys() -> None:
    [msg] = problems(MINIMAL + "[optimizer]\nlr = 1\n")
    assert "optimizer: unknown key" in msg and "valid keys in the top level" in msg


def test_wrong_type_and_out_of_range_are_all_reported_at_once() -> None:
    found = problems(MINIMAL + '[train]\nmax_steps = "ten"\nlearning_rate = 2.0\n[lora]\nr = 0\n')
    text = "\n".join(found)
    assert len(found) == 3
    assert "train.max_steps" in text and "train.learning_rate" in text and "lora.r" in text
    assert "(got 2.0)" in text


def test_missing_required_key_says_what_to_add() -> None:
    [msg] = problems('name = "t"\n[model]\nbase = "x"\n')
    assert "data: is required" in msg and "add a [data] table" in msg


def test_secret_in_job_file_is_refused_without_echoing_it() -> None:
    secret = "hf_" + "a" * 34
    found = problems(MINIMAL.replace("[data]", f'hf_token = "{secret}"\n[data]'))
    text = "\n".join(found)
    assert "looks like a secret" in text and "HF_TOKEN" in text
    assert secret not in text


def test_cross_field_rules() -> None:
    text = "\n".join(problems(MINIMAL + '[template]\nstyle = "custom"\n'))
    assert "needs both template.prompt and template.completion" in text
    text = "\n".join(problems(MINIMAL + '[smoke]\ngguf = "q8_0"\n'))
    assert "not among export.gguf" in text


def test_a_job_asking_for_gpus_it_would_not_train_on_is_refused() -> None:
    """The trainer is one process on one GPU: ``gpus = 2`` would rent a second GPU and leave it idle."""
    (text,) = problems(MINIMAL + "[run]\ngpus = 2\n")
    assert text.startswith("job.toml:7: run.gpus: a job trains on one GPU") and "set gpus = 1" in text
    assert parse_spec(MINIMAL + "[run]\ngpus = 0\n", "job.toml").run.gpus == 0


@pytest.mark.parametrize(
    ("content", "expected"),
    [
        (None, "file not found"),
        (b"", "is empty"),
        (b"\x00\x01binary", "binary file"),
        (b'name = "\xff\xfe"', "not valid UTF-8"),
    ],
)
def test_unreadable_files(tmp_path: Path, content: bytes | None, expected: str) -> None:
    path = tmp_path / "job.toml"
    if content is not None:
        path.write_bytes(content)
    with pytest.raises(SpecError, match=expected):
        load_spec(path)


def test_directory_is_not_a_job_file(tmp_path: Path) -> None:
    with pytest.raises(SpecError, match="is a directory"):
        load_spec(tmp_path)


def test_missing_data_column_is_named(tmp_path: Path) -> None:
    (tmp_path / "rows.jsonl").write_text('{"Question": "q", "Answer": "a"}\n')
    job = tmp_path / "job.toml"
    job.write_text(
        MINIMAL + 'format = "columns"\n[data.columns]\nprompt = "Question"\nresponse = "Response"\n'
    )
    with pytest.raises(SpecError) as info:
        validate_file(job)
    assert "data.columns" in str(info.value) and "Response" in str(info.value)


def test_missing_data_file_is_named(tmp_path: Path) -> None:
    job = tmp_path / "job.toml"
    job.write_text(MINIMAL)
    with pytest.raises(SpecError, match=r"data\.source: data file .*rows\.jsonl not found"):
        validate_file(job)


def test_hub_dataset_is_not_checked_offline(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    job = tmp_path / "job.toml"
    job.write_text(MINIMAL.replace('"rows.jsonl"', '"FreedomIntelligence/medical-o1-reasoning-SFT"'))
    _, data = validate_file(job)
    assert data.status == "not checked (offline)"


def run_cli(*args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    return subprocess.run(
        [sys.executable, "-m", "runner", *args], capture_output=True, text=True, env=env, cwd=ROOT
    )


def test_cli_exit_codes_and_no_traceback(tmp_path: Path) -> None:
    good = run_cli("validate", str(DEMO))
    assert good.returncode == 0, good.stderr
    assert "valid" in good.stdout and "43 train + 5 eval rows" in good.stdout
    bad = tmp_path / "bad.toml"
    bad.write_text(MINIMAL + "[train]\nlearnig_rate = 1\n")
    for path in (bad, tmp_path / "missing.toml", tmp_path):
        result = run_cli("validate", str(path))
        assert result.returncode == 2
        assert "Traceback" not in result.stderr and str(path) in result.stderr


def test_job_file_reference_is_current() -> None:
    from runner.spec.reference import render

    assert (ROOT / "docs" / "job-file.md").read_text() == render(), (
        "run: python -m runner.spec.reference > docs/job-file.md"
    )


def test_validation_needs_no_training_stack() -> None:
    """The CLI, TUI and `tuneq validate` run where llama-cpp-python and torch are not installed."""
    code = (
        "import sys; sys.modules['llama_cpp'] = None; sys.modules['torch'] = None\n"
        "from runner.spec import load_spec\n"
        f"print(load_spec({str(DEMO)!r}).spec.export.gguf)"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT)
    assert result.returncode == 0, result.stderr
    assert "q4_k_m" in result.stdout


def _model_job(tmp_path: Path, base: str) -> Path:
    (tmp_path / "rows.jsonl").write_text(
        "".join(f'{{"instruction": "q{i}", "output": "a{i}"}}\n' for i in range(4))
    )
    job = tmp_path / "job.toml"
    job.write_text(MINIMAL.replace('"tuneq:tiny-llama"', f"{base!r}"))
    return job


@pytest.mark.parametrize(("arch", "code"), [("NoSuchForCausalLM", 2), ("LlamaForCausalLM", 0)])
def test_an_architecture_the_converter_lacks_is_refused(tmp_path: Path, arch: str, code: int) -> None:
    model = tmp_path / "model"
    model.mkdir()
    (model / "config.json").write_text(f'{{"architectures": ["{arch}"], "model_type": "x"}}')
    (model / "chat_template.jinja").write_text(CHATML)
    job = _model_job(tmp_path, str(model))
    result = run_cli("validate", str(job))
    assert result.returncode == code, result.stderr
    if code:
        assert result.stderr.strip().splitlines() == [
            f"{job}:3: model.base: architecture NoSuchForCausalLM cannot be converted to GGUF by the pinned "
            f"llama.cpp converter ({len(convertible_architectures())} supported, e.g. LlamaForCausalLM, "
            "Qwen2ForCausalLM): pick a base model of a supported architecture"
        ]
    else:
        assert "convert   LlamaForCausalLM: llama.cpp's converter supports it" in result.stdout


def test_supported_architectures_come_from_the_converters_source() -> None:
    names = convertible_architectures()
    assert {"LlamaForCausalLM", "Qwen2ForCausalLM", "Qwen3ForCausalLM", "MistralForCausalLM"} <= names
    assert "NoSuchForCausalLM" not in names


def test_an_uncached_hub_model_is_not_checked_offline(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "empty-cache"))
    job = _model_job(tmp_path, "someone/not-in-the-cache")
    code = (
        "import sys; sys.modules['llama_cpp'] = None; sys.modules['torch'] = None\n"
        "from runner.commands.validate import validate_file, base_architecture\n"
        f"validate_file({str(job)!r}); print(base_architecture('someone/not-in-the-cache')[1])"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "not checked (offline)"
