"""The house rules in pyproject's import contracts hold, and a forbidden import breaks them."""

from __future__ import annotations

import ast
import json
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
        ("runner/ship/card.py", "runner.pipeline.stages.quantize", "ship/ is self-contained"),
        ("runner/pipeline/stages/smoke.py", "runner.store", "the pipeline knows nothing of the queue"),
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


# --- the run directory's names live in runner/core/rundir.py only ----------------------------------------

RUNDIR_MODULE = Path("runner/core/rundir.py")


def run_directory_names() -> tuple[set[str], set[str]]:
    """Read from :class:`RunDir` itself, so the list cannot go stale: the names no other code may spell
    anywhere (files such as ``report.json``, and the fixed parts of GGUF names), and every name, which no
    other code may join onto a path with ``/`` (``run / "merged"``: plain words such as ``data`` are also
    stage names and row keys)."""
    from runner.core.rundir import RunDir

    run = RunDir(Path("/run"))
    paths = [getattr(run, n) for n, attr in vars(RunDir).items() if isinstance(attr, property)]
    every = {part for p in paths if isinstance(p, Path) for part in p.relative_to(run.root).parts}
    fragments = {
        str(p.relative_to(run.gguf)).removeprefix("NAME")
        for p in (run.quant_gguf("NAME", "f16"), run.lora_gguf("NAME"))
    }
    distinctive = {n for n in every if not (n.isidentifier() and n.islower())} | fragments
    return distinctive, every


def _docstrings(tree: ast.AST) -> set[int]:
    found = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Module | ast.ClassDef | ast.FunctionDef | ast.AsyncFunctionDef) and node.body:
            first = node.body[0]
            if isinstance(first, ast.Expr) and isinstance(first.value, ast.Constant):
                found.add(id(first.value))
    return found


def spelled_names(tree_root: Path) -> list[str]:
    """``file:line: name`` for each run-directory name spelled outside runner/core/rundir.py."""
    distinctive, every = run_directory_names()
    found = []
    for path in sorted(p for part in ("runner", "tui") for p in (tree_root / part).rglob("*.py")):
        rel = path.relative_to(tree_root)
        if rel == RUNDIR_MODULE:
            continue
        tree = ast.parse(path.read_text(), str(rel))
        docstrings = _docstrings(tree)
        joined = {
            id(node.right)
            for node in ast.walk(tree)
            if isinstance(node, ast.BinOp) and isinstance(node.op, ast.Div)
        }
        for node in ast.walk(tree):
            if (
                not isinstance(node, ast.Constant)
                or not isinstance(node.value, str)
                or id(node) in docstrings
            ):
                continue
            if node.value in distinctive or (node.value in every and id(node) in joined):
                found.append(f"{rel}:{node.lineno}: {node.value!r}")
    return found


def test_only_the_run_directory_module_spells_its_names() -> None:
    assert spelled_names(ROOT) == []


@pytest.mark.parametrize(
    ("module", "planted", "name"),
    [
        ("runner/pipeline/report.py", 'PLANTED = "events.jsonl"', "'events.jsonl'"),
        ("tui/runfiles.py", 'PLANTED = Path("/r") / "merged"', "'merged'"),
        ("runner/ship/card.py", 'PLANTED = f"{__name__}-lora-f16.gguf"', "'-lora-f16.gguf'"),
        ("runner/cluster/backend.py", 'PLANTED = ("SHA256SUMS",)', "'SHA256SUMS'"),
    ],
)
def test_a_spelled_run_directory_name_is_found(tmp_path: Path, module: str, planted: str, name: str) -> None:
    tree = copy_of_the_code(tmp_path)
    path = tree / module
    path.write_text(path.read_text() + f"\n{planted}\n")
    lines = len(path.read_text().splitlines())
    assert spelled_names(tree) == [f"{module}:{lines}: {name}"]


# --- no import circle in runner/ ---------------------------------------------------------------------------

# Prints each set of runner modules that import one another in a circle (grimp's graph: every import,
# those inside functions too), as JSON.
_CYCLES = """
import json, sys
import grimp

graph = grimp.build_graph("runner", cache_dir=None)
edges = {m: sorted(graph.find_modules_directly_imported_by(m)) for m in sorted(graph.modules)}
index, low, stack, on_stack, found = {}, {}, [], set(), []

def visit(module):
    index[module] = low[module] = len(index)
    stack.append(module)
    on_stack.add(module)
    for other in edges.get(module, ()):
        if other not in index:
            visit(other)
            low[module] = min(low[module], low[other])
        elif other in on_stack:
            low[module] = min(low[module], index[other])
    if low[module] == index[module]:
        group = []
        while not group or group[-1] != module:
            group.append(stack.pop())
            on_stack.discard(group[-1])
        if len(group) > 1:
            found.append(sorted(group))

sys.setrecursionlimit(10_000)
for module in edges:
    if module not in index:
        visit(module)
print(json.dumps(sorted(found)))
"""


def import_cycles(tree: Path) -> list[list[str]]:
    env = {**os.environ, "PYTHONPATH": str(tree)}
    done = subprocess.run(
        [sys.executable, "-c", _CYCLES], cwd=tree, env=env, capture_output=True, text=True, timeout=300
    )
    assert done.returncode == 0, done.stderr
    cycles: list[list[str]] = json.loads(done.stdout)
    return cycles


def test_no_import_circle_in_runner(tmp_path: Path) -> None:
    assert import_cycles(copy_of_the_code(tmp_path)) == []


def test_a_planted_import_circle_is_found(tmp_path: Path) -> None:
    tree = copy_of_the_code(tmp_path)  # as it is, it has no circle (the test above)
    path = tree / "runner/pipeline/context.py"  # runner.pipeline.stages.smoke imports it
    path.write_text(
        path.read_text() + "\n\ndef planted() -> None:\n    import runner.pipeline.stages.smoke  # noqa\n"
    )
    cycles = import_cycles(tree)
    assert len(cycles) == 1 and {"runner.pipeline.context", "runner.pipeline.stages.smoke"} <= set(cycles[0])


# --- docs/architecture.md's code layout is the tree's ------------------------------------------------------


def documented_packages(text: str) -> set[str]:
    """The folders the code layout block names: ``runner/core/`` at a line's start, and the sub-folders
    (``  stages/``) indented two spaces under it."""
    named, parent = set(), ""
    for line in text.split("```")[1].splitlines():
        if line and not line.startswith(" "):
            parent = line.split()[0]
            named.add(parent.rstrip("/"))
        elif line.startswith("  ") and not line.startswith("   "):
            named.update(parent + word.rstrip("/") for word in line.split() if word.endswith("/"))
    return named


def tree_packages() -> set[str]:
    found = {
        str(p.parent.relative_to(ROOT))
        for part in ("runner", "tui")
        for p in (ROOT / part).rglob("__init__.py")
    }
    return found - {"runner"}


def test_the_documented_code_layout_names_every_package_and_no_other() -> None:
    assert documented_packages((ROOT / "docs/architecture.md").read_text()) == tree_packages()


@pytest.mark.parametrize(
    ("listed", "instead"), [("\n  stages/", "\n  phases/"), ("\nrunner/pins/", "\nrunner/pinz/")]
)
def test_a_layout_that_differs_from_the_tree_is_found(listed: str, instead: str) -> None:
    text = (ROOT / "docs/architecture.md").read_text()
    assert listed in text
    assert documented_packages(text.replace(listed, instead)) != tree_packages()
