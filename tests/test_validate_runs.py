"""``tuneq validate`` means the job will run (issue 23): through the real CLI, each defect that used to pass
validate (or crash it) is exit 2 and one line naming the file, the row or the key and the fix."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import ROOT, heavy_modules_after

from runner.core.rundir import RunDir
from runner.spec.reference import EXAMPLES

CHATML = (
    "{% for m in messages %}{{ '<|im_start|>' + m['role'] + '\\n' + m['content'] + '<|im_end|>\\n' }}"
    "{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}{% endif %}"
)


def tuneq(*args: str, cwd: Path = ROOT) -> subprocess.CompletedProcess[str]:
    """``python -m runner ARGS`` offline, in its own process."""
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "PYTHONPATH": str(ROOT)}
    return subprocess.run(
        [sys.executable, "-m", "runner", *args], capture_output=True, text=True, env=env, cwd=cwd, timeout=120
    )


def refused(done: subprocess.CompletedProcess[str], *words: str) -> str:
    """Exit 2 and exactly one line on stderr holding ``words``; that line."""
    assert done.returncode == 2, (done.returncode, done.stdout, done.stderr)
    assert "Traceback" not in done.stderr, done.stderr
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1, done.stderr
    assert all(w in lines[0] for w in words), lines[0]
    return lines[0]


def job_file(folder: Path, base: str = "tuneq:tiny-llama", data: str = "", template: str = "r1") -> Path:
    """A job file in ``folder`` training on ``rows.jsonl`` (80 alpaca rows) unless ``data`` says otherwise."""
    folder.mkdir(parents=True, exist_ok=True)
    rows = folder / "rows.jsonl"
    if not rows.exists():
        rows.write_text(
            "".join(json.dumps({"instruction": f"q{i}", "output": f"a{i}"}) + "\n" for i in range(80))
        )
    job = folder / "job.toml"
    data = data or 'source = "rows.jsonl"'
    job.write_text(
        f'name = "t"\n[model]\nbase = "{base}"\n[data]\n{data}\n[template]\nstyle = "{template}"\n'
    )
    return job


def model_dir(folder: Path, chat_template: str | None = CHATML) -> Path:
    """A model directory as validate reads it: config.json and, unless None, a chat template."""
    folder.mkdir(parents=True)
    (folder / "config.json").write_text('{"architectures": ["LlamaForCausalLM"], "model_type": "llama"}')
    config = {"eos_token": "<|im_end|>", **({"chat_template": chat_template} if chat_template else {})}
    (folder / "tokenizer_config.json").write_text(json.dumps(config))
    return folder


# --- 1. eval rows are never training rows ------------------------------------------------------------


@pytest.mark.parametrize(
    ("split", "eval_split", "overlap"),
    [
        ("train", "validation", "rows 1-80 of 80"),  # the docs' own example, on a local file
        ("train", "train[70:80]", "rows 71-80 of 80"),
        ("train[:75]", "train[70:80]", "rows 71-75 of 80"),
        ("train[:90%]", "test[85%:]", "rows 69-72 of 80"),
    ],
)
def test_eval_rows_that_are_training_rows_are_refused(
    tmp_path: Path, split: str, eval_split: str, overlap: str
) -> None:
    job = job_file(tmp_path, data=f'source = "rows.jsonl"\nsplit = "{split}"\neval_split = "{eval_split}"')
    line = refused(tuneq("validate", str(job)), f"{job}:7: data.eval_split:", overlap, "eval_split = 0.1")
    assert "disjoint slices" in line


@pytest.mark.parametrize(
    ("split", "eval_split", "counts", "chosen"),
    [
        (
            "train[:70]",
            "train[70:80]",
            "70 train + 10 eval",
            "rows 71-80 of the local file (eval_split 'train[70:80]')",
        ),
        ("train[:90%]", "train[90%:]", "72 train + 8 eval", "rows 73-80 of the local file"),
        (
            "train",
            "0.1",
            "72 train + 8 eval",
            "8 of 80 rows of split 'train' held out at random (eval_split 0.1, seed",
        ),
    ],
)
def test_disjoint_eval_rows_are_taken_and_the_choice_is_shown(
    tmp_path: Path, split: str, eval_split: str, counts: str, chosen: str
) -> None:
    value = eval_split if eval_split[0].isdigit() else f'"{eval_split}"'
    job = job_file(tmp_path, data=f'source = "rows.jsonl"\nsplit = "{split}"\neval_split = {value}')
    done = tuneq("validate", str(job))
    assert done.returncode == 0, done.stderr
    assert f"{counts} rows" in done.stdout and f"  eval      {chosen}" in done.stdout


@pytest.mark.parametrize(
    "splits",
    ['split = "train[:70]"\neval_split = "train[70:]"', 'split = "train[70:]"'],
    ids=["an eval row", "a training row"],
)
def test_rows_of_a_slice_are_named_by_their_row_in_the_file(tmp_path: Path, splits: str) -> None:
    rows = [{"messages": [{"role": "user", "content": "q"}, {"role": "assistant", "content": "a"}]}] * 80
    rows[74] = {"messages": "oops"}  # row 75 of the file
    (tmp_path / "chats.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    done = tuneq("validate", str(job_file(tmp_path, data=f'source = "chats.jsonl"\n{splits}')))
    assert done.returncode == 2 and "Traceback" not in done.stderr
    assert "1 of 10 rows of chats.jsonl cannot be used:\n  row 75: 'messages' must be a list" in done.stderr


def test_the_data_stage_result_says_how_eval_rows_were_chosen(tmp_path: Path) -> None:
    """What the data stage returns (report.json's "data") comes from the same examples validate shows."""
    from runner.dataset.build import load_examples
    from runner.spec import load_spec

    job = job_file(tmp_path, data='source = "rows.jsonl"\nsplit = "train[:70]"\neval_split = "train[70:]"')
    spec = load_spec(job).spec
    examples = load_examples(spec.data, spec.template, tmp_path, None, spec.train.seed)
    trained, held_out = ({e.fields["instruction"] for e in part} for part in (examples.train, examples.eval))
    assert held_out == {f"q{i}" for i in range(70, 80)} and trained.isdisjoint(held_out)
    assert examples.eval_from.startswith("rows 71-80 of the local file")
    assert "eval_rows_from" in (ROOT / "runner" / "pipeline" / "stages" / "data.py").read_text()


# --- 2. a relative model.base is taken from the job file's directory, and the run gets it -------------


def test_a_relative_base_is_found_from_the_job_files_directory_and_stored_for_the_run(
    tmp_path: Path, home: Path
) -> None:
    from runner.spec.load import run_spec

    project = tmp_path / "project"
    model = model_dir(project / "models" / "m")
    job = job_file(project / "jobs", base="../models/m")
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    done = tuneq("validate", str(job), cwd=elsewhere)
    assert done.returncode == 0, done.stderr
    assert f"  model     {model}," in done.stdout
    assert "convert   LlamaForCausalLM: llama.cpp's converter supports it" in done.stdout
    submitted = tuneq("submit", str(job), cwd=elsewhere)
    assert submitted.returncode == 0, submitted.stderr
    run = RunDir(home / "runs" / "1")
    assert run.read_job_info()["model_base"] == str(model)
    assert run_spec(run).model.base == str(model)  # what the pipeline in the run directory loads


def test_the_data_stage_runs_in_the_run_directory_with_a_relative_base(tmp_path: Path, home: Path) -> None:
    """Submitted from another directory, the data stage (tokenizer included) finds the base and reports how
    the eval rows were chosen (this failed with "Repo id must be in the form ..." before)."""
    import shutil

    from runner.core.events import EventWriter
    from runner.models.tiny import PACKAGED
    from runner.pipeline.context import StageContext
    from runner.pipeline.stages import data
    from runner.spec.load import run_spec

    shutil.copytree(PACKAGED, tmp_path / "project" / "models" / "tiny")
    job = job_file(
        tmp_path / "project" / "jobs",
        base="../models/tiny",
        data='source = "rows.jsonl"\nsplit = "train[:70]"\neval_split = "train[70:]"',
    )
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    assert tuneq("submit", str(job), cwd=elsewhere).returncode == 0
    run = RunDir(home / "runs" / "1")
    info = run.read_job_info()
    ctx = StageContext(run_spec(run), run, info, EventWriter(run.events, "1"))
    stats = data.run(ctx)
    assert stats["train"]["rows"] == 70 and stats["eval"]["rows"] == 10
    assert stats["eval_rows_from"].startswith("rows 71-80 of the local file")


# --- 3. bad model.base and CSV rows: one line, never a traceback ---------------------------------------


@pytest.mark.parametrize(
    ("base", "make", "words"),
    [
        ("./models/nothing", None, ("models/nothing not found", "taken from the job file's directory")),
        ("./models/m.gguf", "gguf", ("m.gguf is a GGUF file", "de-quantize it first")),
        ("./models/empty", "empty", ("models/empty has no config.json", "save_pretrained")),
        ("./models/with-gguf", "gguf-dir", ("holds a GGUF but no config.json", "hub id")),
        ("no such model!", None, ("'no such model!' is neither a model directory nor a hub id",)),
    ],
)
def test_a_base_that_cannot_be_trained_is_one_line(
    tmp_path: Path, base: str, make: str | None, words: tuple[str, ...]
) -> None:
    models = tmp_path / "models"
    models.mkdir()
    if make == "gguf":
        (models / "m.gguf").write_bytes(b"GGUF\x03\x00\x00\x00")
    elif make == "empty":
        (models / "empty").mkdir()
    elif make == "gguf-dir":
        (models / "with-gguf").mkdir()
        (models / "with-gguf" / "x.Q4_K_M.gguf").write_bytes(b"GGUF")
    job = job_file(tmp_path, base=base)
    refused(tuneq("validate", str(job)), f"{job}:3: model.base:", *words)


CSV_COMMA = "question,answer\nWhat is 2+2?,Four.\nName two colours.,Red, and blue.\n"


@pytest.mark.parametrize(
    "data",
    [
        'source = "rows.csv"',  # format auto
        'source = "rows.csv"\nformat = "columns"\n[data.columns]\nprompt = "question"\nresponse = "answr"',
        'source = "rows.csv"\nformat = "columns"\n[data.columns]\nprompt = "question"\nresponse = "answer"',
    ],
)
def test_a_csv_row_with_an_unquoted_comma_is_named_never_cut(tmp_path: Path, data: str) -> None:
    (tmp_path / "rows.csv").write_text(CSV_COMMA)
    job = job_file(tmp_path, data=data)
    refused(
        tuneq("validate", str(job)),
        "rows.csv:3: 3 fields where the header has 2 (question, answer)",
        'in double quotes ("like, this")',
    )
    (tmp_path / "rows.csv").write_text(CSV_COMMA.replace("Red, and blue.", '"Red, and blue."'))
    if "columns" in data and "answr" not in data:
        assert tuneq("validate", str(job)).returncode == 0


def test_a_mistyped_column_suggests_the_close_one(tmp_path: Path) -> None:
    (tmp_path / "rows.csv").write_text("question,answer\nq1,a1\nq2,a2\n")
    data = 'source = "rows.csv"\nformat = "columns"\n[data.columns]\nprompt = "question"\nresponse = "answr"'
    job = job_file(tmp_path, data=data)
    done = tuneq("validate", str(job))
    assert done.returncode == 2 and "Traceback" not in done.stderr
    assert "column 'answr' missing in 2 of 2 rows" in done.stderr and "did you mean 'answer'?" in done.stderr


# --- 4. chat templates are checked by every validate, without transformers in the CLI ------------------


def test_style_chat_on_a_base_without_a_chat_template_is_refused(tmp_path: Path) -> None:
    model = model_dir(tmp_path / "base-model", chat_template=None)
    job = job_file(tmp_path, base=str(model), template="chat")
    refused(tuneq("validate", str(job)), f"{job}:7: template.style:", f"{model} has none", "style 'alpaca'")
    job.write_text(job.read_text().replace('style = "chat"', 'style = "alpaca"'))
    assert tuneq("validate", str(job)).returncode == 0


def test_a_template_that_renders_turns_inconsistently_is_refused_by_plain_validate(tmp_path: Path) -> None:
    counting = "{{ messages | length }}:" + CHATML  # the prefix changes when a turn is added
    model = model_dir(tmp_path / "m", chat_template=counting)
    job = job_file(tmp_path, base=str(model), template="chat")
    refused(
        tuneq("validate", str(job)), "template.style: row ", "of rows.jsonl: ", "renders turns inconsistently"
    )
    (model / "tokenizer_config.json").write_text(json.dumps({"chat_template": CHATML}))
    assert tuneq("validate", str(job)).returncode == 0
    code = f"from runner.commands.validate import validate_file\nvalidate_file({str(job)!r})"
    assert heavy_modules_after(code, ("transformers", "tokenizers", "torch")) == []


# --- 5. format auto: the file, the row, and a mapping of its own columns -----------------------------


@pytest.mark.parametrize(
    ("header", "words"),
    [
        ("Question,Answer", ('[data.columns] prompt = "Question", response = "Answer"',)),
        (
            "instruction,answer",
            ("format 'alpaca' would need 'instruction' and 'output', row 1 lacks 'output'",),
        ),
    ],
)
def test_format_auto_names_the_file_the_row_and_a_mapping_of_its_columns(
    tmp_path: Path, header: str, words: tuple[str, ...]
) -> None:
    (tmp_path / "rows.csv").write_text(f"{header}\nq1,a1\n")
    job = job_file(tmp_path, data='source = "rows.csv"')
    refused(
        tuneq("validate", str(job)), "data.format: rows.csv: cannot tell the data format", "row 1", *words
    )


# --- 6. every shipped job gets a memory and a disk estimate ------------------------------------------


def test_every_shipped_job_gets_memory_and_disk_estimates(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("TUNEQ_HOME", str(tmp_path / "fresh"))  # nothing built: SmolLM2 is not converted yet
    jobs = sorted(str(p) for p in (ROOT / "jobs").glob("*.toml"))
    done = tuneq("validate", *jobs)
    assert done.returncode == 0, done.stderr
    assert done.stdout.count("  memory    ~") == len(jobs) and done.stdout.count("  disk      ~") == len(jobs)
    assert "not estimated" not in done.stdout


# --- 9. the documented examples, one per data format, are complete jobs -------------------------------


@pytest.mark.parametrize("example", EXAMPLES, ids=[e[0] for e in EXAMPLES])
def test_each_documented_example_validates(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, example: tuple[str, str, str, str]
) -> None:
    fmt, name, first, text = example
    if name.endswith(".json"):  # a JSON array: its rows, twenty times
        (tmp_path / name).write_text(json.dumps(json.loads(first) * 20))
    else:  # a header (CSV) and the first row, twenty times
        header, row = first.split("\n") if name.endswith(".csv") else ("", first)
        (tmp_path / name).write_text((header + "\n" if header else "") + (row + "\n") * 20)
    (tmp_path / "job.toml").write_text(text)
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "empty-cache"))
    done = tuneq("validate", str(tmp_path / "job.toml"))
    assert done.returncode == 0, done.stderr
    assert f"rows, format {fmt}" in done.stdout


def test_hub_splits_follow_the_same_rule(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The hub cannot be reached here: its reader returns rows per split name, as ``datasets`` would."""
    from runner.dataset import build
    from runner.dataset.read import DataError
    from runner.spec.model import DataSpec, TemplateSpec

    splits = {
        name: [{"instruction": f"{name}{i}", "output": "a"} for i in range(20)]
        for name in ("train", "validation")
    }
    monkeypatch.setattr(
        build,
        "read_hub",
        lambda source, subset, split: build.parse_split(split).apply(splits[split.split("[")[0]]),
    )

    def load(split: str, eval_split: str) -> build.Examples:
        data = DataSpec(source="org/data", split=split, eval_split=eval_split)
        return build.load_examples(data, TemplateSpec(), tmp_path, None, 0)

    other = load("train", "validation")
    assert (
        other.eval_from == "hub split 'validation' of org/data" and len(other.train) == len(other.eval) == 20
    )
    sliced = load("train[:15]", "train[15:]")
    assert sliced.eval_from.startswith("rows 16-20 of split 'train'") and len(sliced.train) == 15
    with pytest.raises(
        DataError, match=r"takes 5 of the rows split 'train' trains on \(rows 16-20 of 20 in split"
    ):
        load("train", "train[15:]")


def test_validate_json_gives_each_files_summary_or_its_problems(tmp_path: Path) -> None:
    bad = tmp_path / "bad.toml"
    bad.write_text((ROOT / "jobs" / "demo-tiny.toml").read_text().replace("learning_rate", "learnin_rate"))
    done = tuneq("validate", "--json", str(ROOT / "jobs" / "demo-tiny.toml"), str(bad))
    assert done.returncode == 2 and "Traceback" not in done.stderr
    good, refused = json.loads(done.stdout)["files"]
    assert good["valid"] and good["summary"]["data"].endswith("43 train + 5 eval rows, format columns")
    assert {"memory", "disk", "eval"} <= set(good["summary"])
    assert not refused["valid"] and refused["problems"][0]["key"] == "train.learnin_rate"


def test_output_cut_short_by_its_reader_is_no_traceback() -> None:
    """`tuneq … | head`: the reader leaves early; the pipe's end is no error of the user's to read about."""
    script = (
        f"{sys.executable} -m runner validate --json {ROOT / 'jobs'}/demo-tiny.toml | true"  # never reads
    )
    done = subprocess.run(["bash", "-c", script], capture_output=True, text=True, cwd=ROOT, timeout=300)
    assert "Traceback" not in done.stderr and "BrokenPipeError" not in done.stderr, done.stderr
