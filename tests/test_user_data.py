"""The files and names users bring: Excel CSVs, Latin-1 text, path-like sources, names in any script,
missing columns. Each gets read correctly or a one-line message naming the file, the line and the fix."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from runner.commands.validate import validate_file
from runner.spec import SpecError, parse_spec

COLUMNS_JOB = """\
name = "t"
[model]
base = "tuneq:tiny-llama"
[data]
source = "{source}"
format = "columns"
[data.columns]
prompt = "question"
response = "answer"
[template]
style = "r1"
"""


def write_job(tmp_path: Path, source: str) -> Path:
    job = tmp_path / "job.toml"
    job.write_text(COLUMNS_JOB.format(source=source))
    return job


def problem(job: Path) -> str:
    with pytest.raises(SpecError) as info:
        validate_file(job)
    return str(info.value)


@pytest.mark.parametrize(
    ("name", "content"),
    [
        ("excel.csv", "question,answer\r\nWhat is 2+2?,Four.\r\nAnd 3+3?,Six.\r\n"),
        ("rows.jsonl", '{"question": "What is 2+2?", "answer": "Four."}\n{"question": "q", "answer": "a"}\n'),
        ("rows.json", '[{"question": "What is 2+2?", "answer": "Four."}, {"question": "q", "answer": "a"}]'),
    ],
)
def test_a_utf8_byte_order_mark_is_not_part_of_the_first_column(
    tmp_path: Path, name: str, content: str
) -> None:
    """Excel's "CSV UTF-8" (and some editors) start the file with a BOM."""
    (tmp_path / name).write_bytes(b"\xef\xbb\xbf" + content.encode())
    _, data = validate_file(write_job(tmp_path, name))
    assert data.status == "checked" and data.train_rows == 2


def test_latin1_text_names_the_line_and_how_to_convert(tmp_path: Path) -> None:
    rows = '{"question": "q", "answer": "a"}\n{"question": "Caf\u00e9?", "answer": "Oui."}\n'
    (tmp_path / "latin 1.jsonl").write_bytes(rows.encode("latin-1"))
    message = problem(write_job(tmp_path, "latin 1.jsonl"))
    assert "latin 1.jsonl:2: not valid UTF-8 text (byte 50: 0xe9)" in message
    assert "iconv -f latin1 -t utf-8 '" in message and "latin 1.utf8.jsonl'" in message


@pytest.mark.parametrize("source", ["data/alpaca.txt", "alpaca.jsonl", "./alpaca", "owner/name.csv"])
def test_a_missing_path_is_not_taken_for_a_hub_id(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, source: str
) -> None:
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    message = problem(write_job(tmp_path, source))
    assert "data.source" in message and "not found" in message and Path(source).name in message


def test_an_existing_file_of_unknown_type_lists_the_supported_ones(tmp_path: Path) -> None:
    (tmp_path / "data").mkdir()
    (tmp_path / "data" / "alpaca.txt").write_text("question\tanswer\n")
    message = problem(write_job(tmp_path, "data/alpaca.txt"))
    assert "unknown file type '.txt'; supported: .json, .jsonl, .csv, .parquet" in message


def test_hub_ids_with_dots_stay_hub_ids_and_other_text_is_refused(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    _, data = validate_file(write_job(tmp_path, "teknium/OpenHermes-2.5"))
    assert data.status == "not checked (offline)"
    message = problem(write_job(tmp_path, "my rows"))
    assert "neither an existing file nor a hub id" in message and "'owner/name'" in message


def test_a_missing_column_is_counted_and_its_file_named(tmp_path: Path) -> None:
    rows = [{"question": f"q{i}", **({} if i % 10 == 0 or i % 4 else {"answer": "a"})} for i in range(48)]
    (tmp_path / "x.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    missing = [i + 1 for i, r in enumerate(rows) if "answer" not in r]
    message = problem(write_job(tmp_path, "x.jsonl"))
    first = ", ".join(map(str, missing[:5]))
    assert f"column 'answer' missing in {len(missing)} of 48 rows (first: rows {first};" in message
    assert "every row of x.jsonl" in message and "data.columns" in message


NAMED_JOB = '[model]\nbase = "x"\n[data]\nsource = "rows.jsonl"\n'


@pytest.mark.parametrize(
    ("name", "stem"), [("my job", "my-job"), ("日本語ジョブ", "日本語ジョブ"), ("r1.v2_x", "r1.v2_x")]
)
def test_names_in_any_script_are_accepted_with_a_safe_file_stem(name: str, stem: str) -> None:
    from runner.ship.card import commands

    spec = parse_spec(f"name = {json.dumps(name, ensure_ascii=False)}\n{NAMED_JOB}", "job.toml")
    assert spec.name == name and spec.artifact_name == stem
    ollama = commands(spec, f"{stem}-Q4_K_M.gguf", None).split("ollama create ")[1].split()[0]
    assert ollama.isascii() and ollama == ollama.lower() and " " not in ollama


@pytest.mark.parametrize(
    ("name", "why"),
    [
        ("../escape", "path separator"),
        ("a\\b", "path separator"),
        (".hidden", "may not start with '.'"),
        ("a..b", "may not hold '..'"),
        ("bell\u0007", "U+0007 not allowed"),
        ("", "has 0 characters"),
        ("x" * 65, "has 65 characters"),
    ],
)
def test_bad_names_are_refused_in_words(name: str, why: str) -> None:
    with pytest.raises(SpecError) as info:
        parse_spec(f"name = {json.dumps(name)}\n{NAMED_JOB}", "job.toml")
    message = str(info.value)
    assert why in message and "letters and digits in any script" in message
    assert "pattern" not in message and "^[" not in message


def test_validate_says_where_lengths_are_counted(tmp_path: Path) -> None:
    import os
    import subprocess
    import sys

    (tmp_path / "rows.jsonl").write_text('{"question": "q", "answer": "a"}\n')
    job = write_job(tmp_path, "rows.jsonl")
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    result = subprocess.run(
        [sys.executable, "-m", "runner", "validate", str(job)], capture_output=True, text=True, env=env
    )
    assert result.returncode == 0, result.stderr
    assert "lengths   not counted: --show-sample" in result.stdout


def test_show_sample_renders_a_row_and_refuses_data_that_truncation_empties(tmp_path: Path) -> None:
    import os
    import subprocess
    import sys

    question = "What is two plus two, said slowly, in words, with every step spelled out for a child?"
    (tmp_path / "rows.jsonl").write_text(
        f'{{"question": "{question}", "answer": "Four, since 2+2=4."}}\n' * 3
    )
    job = write_job(tmp_path, "rows.jsonl")
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}

    def validate(path: Path) -> subprocess.CompletedProcess[str]:
        command = [sys.executable, "-m", "runner", "validate", "--show-sample", str(path)]
        return subprocess.run(command, capture_output=True, text=True, env=env, timeout=300)

    shown = validate(job)
    assert shown.returncode == 0, shown.stderr
    assert "--- trained part" in shown.stdout and "Four, since 2+2=4." in shown.stdout
    assert "3 examples tokenized: 0 truncated to max_seq_length, 0 with nothing to learn" in shown.stdout
    short = tmp_path / "short.toml"
    short.write_text(job.read_text().replace("[data]", "max_seq_length = 16\n[data]"))
    cut = validate(short)
    assert cut.returncode == 2
    assert "model.max_seq_length: every example loses its answer to truncation" in cut.stderr
