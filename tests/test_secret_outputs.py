"""A secret's value in a job's data reaches no file of the run and no line the CLI prints: the data copy in
``input/``, ``data/sample.txt``, ``smoke.json``, ``fidelity.json``, ``eval.md``, ``ship/README.md`` (the
model card ``tuneq push`` publishes), stage markers, ``report.json``; ``validate --show-sample`` and
``tuneq run``'s output. Real CLI processes; the last test runs the real pipeline on the demo job."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import DATA, ROOT

from runner.core.secrets import redacted_output, write_redacted, write_redacted_json

PLANTED = "planted-secret-4f9c2e7a1b"  # not token-shaped: only the environment says it is a secret
SHAPED = "hf_" + "Q7xK2pLm9Rt4" * 3  # token-shaped: scrubbed without being in the environment


def tuneq(*args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    """``python -m runner ARGS`` in its own process (the environment carries TUNEQ_HOME and HF_TOKEN)."""
    return subprocess.run(
        [sys.executable, "-m", "runner", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
        cwd=ROOT,
    )


def leaky_demo(tmp_path: Path) -> Path:
    """The demo job, its data's questions holding PLANTED and SHAPED (all but the smoke test's ones)."""
    demo = (ROOT / "jobs" / "demo-tiny.toml").read_text()
    smoke_questions = {line.split('"')[1] for line in demo.splitlines() if line.startswith("prompt = ")}
    rows = [json.loads(line) for line in DATA.read_text().splitlines() if line.strip()]
    for row in rows:
        if row["Question"] not in smoke_questions:
            row["Question"] += f" (ticket {PLANTED}, {SHAPED})"
    (tmp_path / "data").mkdir()
    (tmp_path / "data" / DATA.name).write_text("".join(json.dumps(r) + "\n" for r in rows))
    job = tmp_path / "leaky.toml"  # fidelity only warns: the changed questions are not what is tested here
    job.write_text(demo.replace("max_ppl_increase = 0.02", 'max_ppl_increase = 0.02\non_fidelity = "warn"'))
    return job


def leaks(where: Path) -> list[Path]:
    return [
        p
        for p in where.rglob("*")
        if p.is_file() and (PLANTED.encode() in p.read_bytes() or SHAPED.encode() in p.read_bytes())
    ]


def test_validate_show_sample_prints_no_secret_from_the_data(
    home: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("HF_TOKEN", PLANTED)
    job = leaky_demo(tmp_path)
    job.write_text(job.read_text().replace('format = "columns"', 'format = "columns"\nshuffle = false'))
    done = tuneq("validate", str(job), "--show-sample")
    assert done.returncode == 0, done.stderr
    assert "(ticket ***, ***)" in done.stdout  # the sample is the first row, which holds both
    assert PLANTED not in done.stdout + done.stderr and SHAPED not in done.stdout + done.stderr


def test_the_redacting_writers_and_output(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("HF_TOKEN", PLANTED)
    write_redacted(tmp_path / "eval.md", f"| {PLANTED} | {SHAPED} |\n")
    write_redacted_json(tmp_path / "smoke.json", {"answers": [{PLANTED: SHAPED}], "n": 1, "path": tmp_path})
    assert (tmp_path / "eval.md").read_text() == "| *** | *** |\n"
    assert json.loads((tmp_path / "smoke.json").read_text()) == {
        "answers": [{"***": "***"}],
        "n": 1,
        "path": str(tmp_path),
    }
    assert sorted(p.name for p in tmp_path.iterdir()) == ["eval.md", "smoke.json"]  # no temporary left
    with redacted_output():
        print(f"token {PLANTED}")
        print(SHAPED, file=sys.stderr)
    out, err = capsys.readouterr()
    assert (out, err) == ("token ***\n", "***\n")


@pytest.mark.slow
def test_a_whole_run_on_data_holding_a_secret_writes_and_prints_none_of_it(
    home: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("HF_TOKEN", PLANTED)
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.delenv("TUNEQ_PIPELINE_CMD")  # the real pipeline, not the fake one of the home fixture
    job = leaky_demo(tmp_path)
    run_dir = tmp_path / "run"
    done = tuneq("run", str(job), "--run-dir", str(run_dir), timeout=1800)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    names = {p.relative_to(run_dir).as_posix() for p in run_dir.rglob("*")}
    written = {"smoke.json", "fidelity.json", "eval.md", "ship/README.md", "data/sample.txt", "report.json"}
    assert written <= names
    assert "***" in (run_dir / "input" / DATA.name).read_text()  # the frozen copy, scrubbed
    assert leaks(run_dir) == []
    assert PLANTED not in done.stdout + done.stderr and SHAPED not in done.stdout + done.stderr
    shown = tuneq("validate", str(job), "--show-sample")
    assert PLANTED not in shown.stdout + shown.stderr
