"""The ship folder: ``tuneq ship`` and ``push`` (the Modelfile's tests: test_ollama_parity.py)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import ROOT

from runner.cli import main
from runner.core.rundir import RunDir
from runner.core.tested import TestedGguf
from runner.ship.card import commands
from runner.ship.files import write_sums
from runner.ship.reach import SshHost
from runner.ship.usage import ollama_commands
from runner.spec import load_spec, parse_spec
from tui.ship import ship_commands

FAKE_TOKEN = "hf_" + "Z" * 34  # a made-up token in the shape of a real one


# --- tuneq ship / push ---------------------------------------------------------------------------------


@pytest.fixture
def run_dir(tmp_path: Path) -> Path:
    """A run directory with a finished ship folder."""
    ship = tmp_path / "run" / "ship"
    ship.mkdir(parents=True)
    (ship / "m-Q4_K_M.gguf").write_bytes(b"GGUF" + bytes(range(256)) * 64)
    (ship / "README.md").write_text("# m\n")
    (ship / "commands.txt").write_text("llama-cli -m ./m-Q4_K_M.gguf -cnv\n")
    write_sums(ship)
    return tmp_path / "run"


def test_ship_to_a_local_directory_verifies_checksums(
    run_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    dest = tmp_path / "out" / "model"
    assert main(["ship", str(run_dir), str(dest)]) == 0
    out = capsys.readouterr().out
    assert f"checksums verified in {dest}" in out and "llama-cli -m ./m-Q4_K_M.gguf" in out
    assert sorted(p.name for p in dest.iterdir()) == sorted(p.name for p in (run_dir / "ship").iterdir())
    assert (dest / "m-Q4_K_M.gguf").read_bytes() == (run_dir / "ship" / "m-Q4_K_M.gguf").read_bytes()


def test_ship_refuses_files_that_do_not_match_their_checksums(
    run_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    sums = run_dir / "ship" / "SHA256SUMS"
    sums.write_text(sums.read_text().replace("README.md", "README.md\n" + "0" * 64 + "  missing.gguf", 1))
    assert main(["ship", str(run_dir), str(tmp_path / "dest")]) == 1
    assert "checksums differ at" in capsys.readouterr().err


def test_ship_needs_a_finished_folder_or_a_known_job(
    tmp_path: Path, home: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["ship", str(tmp_path)]) == 2
    assert "has no finished ship/ folder" in capsys.readouterr().err
    assert main(["ship", "999"]) == 2
    assert "job 999 not found" in capsys.readouterr().err


def test_push_dry_run_lists_the_upload(
    run_dir: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.delenv("HF_TOKEN", raising=False)
    assert main(["push", str(run_dir), "--repo", "me/m", "--dry-run"]) == 0
    out = capsys.readouterr().out
    assert "would upload 4 files" in out and "https://huggingface.co/me/m" in out
    assert all(f"  {name}  " in out for name in ("m-Q4_K_M.gguf", "README.md", "commands.txt", "SHA256SUMS"))


def test_push_takes_the_token_hf_auth_login_saved(run_dir: Path, tmp_path: Path) -> None:
    """No HF_TOKEN: the token file in HF_HOME (what `hf auth login` writes), never printed."""
    env = {k: v for k, v in os.environ.items() if k != "HF_TOKEN"} | {"HF_HOME": str(tmp_path / "hf")}
    env["HF_HUB_OFFLINE"] = "1"  # the upload fails at once, after the token was found

    def push() -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "runner", "push", str(run_dir), "--repo", "me/m"],
            capture_output=True,
            text=True,
            env=env,
            timeout=120,
        )

    missing = push()
    assert missing.returncode == 2 and "no Hugging Face token: run `hf auth login`" in missing.stderr
    (tmp_path / "hf").mkdir()
    (tmp_path / "hf" / "token").write_text(FAKE_TOKEN)
    found = push()
    assert found.returncode == 1 and "the upload failed" in found.stderr, found.stderr
    assert FAKE_TOKEN not in found.stdout + found.stderr


def recording_tools(tmp_path: Path, *names: str) -> Path:
    """A directory holding stand-ins for ``names`` that append their argv to ``argv.jsonl`` and succeed."""
    tools = tmp_path / f"bin-{'-'.join(names)}"
    tools.mkdir()
    for name in names:
        tool = tools / name
        tool.write_text(
            f"#!{sys.executable}\nimport json, sys\n"
            f"open({str(tmp_path / 'argv.jsonl')!r}, 'a').write(json.dumps(sys.argv[1:]) + '\\n')\n"
        )
        tool.chmod(0o755)
    return tools


def ship_cli(*args: str, cwd: Path, path: Path) -> subprocess.CompletedProcess[str]:
    """``python -m runner ship ARGS`` with only ``path`` on PATH."""
    env = {**os.environ, "PATH": str(path), "PYTHONPATH": str(ROOT)}
    command = [sys.executable, "-m", "runner", "ship", *args]
    return subprocess.run(command, cwd=cwd, env=env, capture_output=True, text=True, timeout=60, check=False)


def recorded(tmp_path: Path) -> list[list[str]]:
    log = tmp_path / "argv.jsonl"
    return [json.loads(line) for line in log.read_text().splitlines()] if log.exists() else []


def test_ship_refuses_option_like_and_malformed_destinations_and_creates_nothing(
    run_dir: Path, tmp_path: Path
) -> None:
    tools = recording_tools(tmp_path, "rsync", "scp", "ssh")
    cwd = tmp_path / "cwd"
    (cwd / "etc").mkdir(parents=True)
    (cwd / "etc" / "passwd").write_text("root:x:0:0\n")
    (cwd / "deep" / "here").mkdir(parents=True)
    for dest, why in (
        ("-oProxyCommand=touch x", "looks like an option"),
        ("-e sh -c x", "looks like an option"),
        ("user@[::1:/srv/x", "neither a local path nor [user@]host:path"),
        ("user@[not-an-ip]:/srv/x", "not a valid host"),
        ("user@-oProxyCommand=x:/srv/x", "not a valid host"),
        ("bad user@gpu:/srv/x", "not a valid user"),
        ("gpu:", "names no directory"),
        ("gpu:/srv/a\nb", "control character"),
        ("../../etc", "directory of other files"),  # from deep/here: cwd/etc, which holds other files
    ):
        done = ship_cli(str(run_dir), dest, cwd=cwd / "deep" / "here", path=tools)
        assert (done.returncode, "Traceback" in done.stderr) == (2, False), (dest, done.stderr)
        assert why in done.stderr and len(done.stderr.splitlines()) == 1, (dest, done.stderr)
    assert list((cwd / "deep" / "here").iterdir()) == []  # no "-oProxyCommand=touch x" directory, no "x"
    assert sorted(p.name for p in (cwd / "etc").iterdir()) == ["passwd"]
    assert recorded(tmp_path) == []  # neither rsync, scp nor ssh ran


def test_ship_passes_the_remote_path_after_double_dash_and_past_any_shell(
    run_dir: Path, tmp_path: Path
) -> None:
    """rsync gets ``--protect-args`` and scp ``-s`` (SFTP), so the remote path reaches no shell and spaces
    or ``;`` stay literal; every operand follows ``--``."""
    folder = run_dir / "ship"
    done = ship_cli(
        str(run_dir),
        "me@[::1]:/srv/my models;touch pwned",
        cwd=tmp_path,
        path=recording_tools(tmp_path, "rsync"),
    )
    assert done.returncode == 0, done.stderr
    assert (
        "ran: rsync -a --protect-args -- " in done.stdout
        and "'me@[::1]:/srv/my models;touch pwned/'" in done.stdout
    )
    done = ship_cli(
        str(run_dir), "gpu-box.lan:~/models/m", cwd=tmp_path, path=recording_tools(tmp_path, "scp")
    )
    assert done.returncode == 0, done.stderr
    files = [str(folder / name) for name in ("README.md", "SHA256SUMS", "commands.txt", "m-Q4_K_M.gguf")]
    assert recorded(tmp_path) == [
        ["-a", "--protect-args", "--", f"{folder}/", "me@[::1]:/srv/my models;touch pwned/"],
        ["-p", "-s", "--", *files, "gpu-box.lan:models/m/"],
    ]


def test_ship_into_an_earlier_copy_or_an_empty_directory(run_dir: Path, tmp_path: Path) -> None:
    tools = recording_tools(tmp_path, "rsync")
    (tmp_path / "empty").mkdir()
    for _ in range(2):  # the second time into the first copy
        done = ship_cli(str(run_dir), "empty", cwd=tmp_path, path=tools)
        assert done.returncode == 0, done.stderr
        assert f"checksums verified in {tmp_path / 'empty'}" in done.stdout


def test_the_tui_offers_the_commands_of_commands_txt() -> None:
    spec = load_spec(ROOT / "jobs" / "demo-tiny.toml").spec
    lines = commands(spec, "demo-tiny-Q8_0.gguf", None).splitlines()
    host = SshHost("me", "gpu-box", None, "a test")
    offered = ship_commands(Path("/runs/1/gguf/demo-tiny-Q8_0.gguf"), spec.artifact_name, host)
    runs = [c.text for c in offered if c.text.startswith("llama-")]
    assert runs and all(line in lines for line in runs)  # llama-cli, llama-server with the same flags
    ollama = next(c.text for c in offered if c.label == "Ollama Modelfile").splitlines()[0]
    assert ollama == "# " + " && ".join(line for line in lines if line.startswith("ollama "))


@pytest.mark.parametrize(
    ("name", "export", "quant"),
    [("my job", None, "q4_k_m"), ("x", "my-model-v2", "q8_0"), ("Café Modèle", None, "f16")],
)
def test_the_tui_names_the_ollama_model_as_commands_txt_does(
    tmp_path: Path, name: str, export: str | None, quant: str
) -> None:
    section = f'[export]\nname = "{export}"\n' if export else ""
    spec = parse_spec(
        f'name = "{name}"\n[model]\nbase = "m"\n[data]\nsource = "d.jsonl"\n{section}', "x.toml"
    )
    file = RunDir(tmp_path).quant_gguf(spec.artifact_name, quant)  # where the pipeline writes it
    tested = TestedGguf(quant, str(file.relative_to(tmp_path)))  # as job_end names it
    offered = ship_commands(file, tested.artifact_name, SshHost("me", "box", None, "t"))
    ollama = next(c.text for c in offered if c.label == "Ollama Modelfile").splitlines()[0]
    assert ollama == "# " + " && ".join(ollama_commands(spec.artifact_name))  # commands.txt's lines
