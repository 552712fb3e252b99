"""The house rules in pyproject's import contracts hold, and a forbidden import breaks them."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
LINT_IMPORTS = Path(sys.executable).with_name("lint-imports")  # the dev extra's: a missing one fails


def lint_imports(tree: Path) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": str(tree)}
    return subprocess.run(
        [str(LINT_IMPORTS), "--no-cache"], cwd=tree, env=env, capture_output=True, text=True, timeout=300
    )


def copy_of_the_code(tmp_path: Path) -> Path:
    tree = tmp_path / "tree"
    for part in ("runner", "tui"):
        shutil.copytree(ROOT / part, tree / part, ignore=shutil.ignore_patterns("__pycache__", "tiny_llama"))
    shutil.copy(ROOT / "pyproject.toml", tree / "pyproject.toml")
    return tree


def test_the_code_keeps_every_contract(tmp_path: Path) -> None:
    kept = lint_imports(copy_of_the_code(tmp_path))
    assert kept.returncode == 0, kept.stdout


@pytest.mark.parametrize(
    ("module", "forbidden", "contract"),
    [
        ("tui/widgets/log_panel.py", "runner.pipeline.run", "the CLI and the TUI never load the pipeline"),
        ("tui/format.py", "runner.cli.queue_view", "the TUI does not import the CLI"),
        ("runner/core/events.py", "runner.store", "the core imports nothing of tuneq's other parts"),
        ("runner/spec/quants.py", "llama_cpp", "the spec loads no native library"),
        ("runner/ship/card.py", "runner.pipeline.quantize", "ship/ is self-contained"),
        ("runner/pipeline/smoke.py", "runner.store", "the pipeline knows nothing of the queue"),
        ("runner/pipeline/report.py", "runner.worker.steps", "the pipeline knows nothing of the queue"),
        ("tui/screens/queue.py", "runner.backends.local", "the TUI writes intents through runner.commands"),
    ],
)
def test_a_forbidden_import_breaks_its_contract(
    tmp_path: Path, module: str, forbidden: str, contract: str
) -> None:
    tree = copy_of_the_code(tmp_path)  # as it is, it keeps every contract (the test above)
    path = tree / module
    path.write_text(path.read_text() + f"\nimport {forbidden}  # noqa\n")
    broken = lint_imports(tree)
    assert broken.returncode != 0
    assert f"{contract}" in broken.stdout and "BROKEN" in broken.stdout
