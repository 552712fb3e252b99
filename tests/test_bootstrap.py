"""``just setup``'s choices (runner/bootstrap.py) on machines with and without an NVIDIA GPU.

The GPU is a stand-in ``nvidia-smi`` on PATH and the system torch a stand-in package on PYTHONPATH: what
is tested is what the set-up decides from them (the real GPU run: docs/benchmarks.md, "GPU set-up")."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from runner.bootstrap import CPU_TORCH, Plan, SetupError, plan
from runner.pins import DOCKERFILE, build_args

ROOT = Path(__file__).resolve().parent.parent
IMAGE_TORCH = f"torch=={build_args(DOCKERFILE.read_text())['TORCH_VERSION']}"


@pytest.fixture
def gpu(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """An ``nvidia-smi`` on PATH that lists an H100 and an A10 on a CUDA 13.0 driver; returns its folder."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    smi = bin_dir / "nvidia-smi"
    smi.write_text(
        "#!/bin/sh\n"
        'if [ "$1" = --query-gpu=compute_cap ]; then printf "9.0\\n8.6\\n9.0\\n"; exit 0; fi\n'
        'echo "| NVIDIA-SMI 580.95   Driver Version: 580.95   CUDA Version: ${CUDA_SHOWN:-13.0} |"\n'
    )
    smi.chmod(0o755)
    monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}{os.environ['PATH']}")
    return bin_dir


def system_torch(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, version: str, cuda: str | None) -> None:
    """Make the interpreter's ``import torch`` find a stand-in of ``version`` built for ``cuda``."""
    pkg = tmp_path / "fake-site" / "torch"
    pkg.mkdir(parents=True)
    (pkg / "__init__.py").write_text(f"__version__ = {version!r}\nclass version:\n    cuda = {cuda!r}\n")
    monkeypatch.setenv("PYTHONPATH", f"{pkg.parent}{os.pathsep}{os.environ.get('PYTHONPATH', '')}")


def test_no_gpu_keeps_the_cpu_setup(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    (bin_dir / "nvidia-smi").write_text("#!/bin/sh\necho 'No devices were found'; exit 6\n")
    (bin_dir / "nvidia-smi").chmod(0o755)
    monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}{os.environ['PATH']}")
    assert plan(tmp_path / "venv", {}) == Plan(False, CPU_TORCH, None, "")
    assert plan(tmp_path / "venv", {"TUNEQ_TORCH": "torch==2.12.0"}).torch == "torch==2.12.0"
    assert Plan(False, CPU_TORCH, None, "").extras == "train,dev"


def test_gpu_found_compiles_for_its_capabilities_with_the_image_torch(
    tmp_path: Path, gpu: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A system torch without CUDA is not reused: PyPI's CUDA torch of the image is installed."""
    system_torch(tmp_path, monkeypatch, "2.13.0+cpu", None)
    todo = plan(tmp_path / "venv", {})
    assert todo == Plan(True, IMAGE_TORCH, None, "86;90")
    assert todo.extras == "train,gpu,dev"
    assert plan(tmp_path / "venv", {"TUNEQ_CUDA_ARCHITECTURES": "80;90"}).architectures == "80;90"
    assert plan(tmp_path / "venv", {"TUNEQ_GPU": "cpu"}) == Plan(False, CPU_TORCH, None, "")


def test_a_system_cuda_torch_inside_the_pins_is_reused(
    tmp_path: Path, gpu: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    system_torch(tmp_path, monkeypatch, "2.11.0+cu130", "13.0")
    assert plan(tmp_path / "venv", {}) == Plan(True, None, None, "86;90")
    # an explicit requirement, a torch index or an existing environment without system packages: no reuse
    assert plan(tmp_path / "venv", {"TUNEQ_TORCH": "torch==2.11.0"}).torch == "torch==2.11.0"
    assert plan(tmp_path / "venv", {"TUNEQ_TORCH_INDEX": "https://x/cu130"}).torch == IMAGE_TORCH
    own = tmp_path / "own"
    own.mkdir()
    (own / "pyvenv.cfg").write_text("include-system-site-packages = false\n")
    assert plan(own, {}).torch == IMAGE_TORCH


@pytest.mark.parametrize(("version", "cuda"), [("2.15.0+cu130", "13.0"), ("2.11.0+cpu", None)])
def test_a_system_torch_outside_the_pins_or_without_cuda_is_not_reused(
    tmp_path: Path, gpu: Path, monkeypatch: pytest.MonkeyPatch, version: str, cuda: str | None
) -> None:
    system_torch(tmp_path, monkeypatch, version, cuda)
    assert plan(tmp_path / "venv", {}).torch == IMAGE_TORCH


def test_an_old_driver_gets_the_fix(tmp_path: Path, gpu: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    system_torch(tmp_path, monkeypatch, "2.13.0+cpu", None)
    monkeypatch.setenv("CUDA_SHOWN", "12.4")
    with pytest.raises(SetupError, match=r"runs CUDA 12\.4 at most.*TUNEQ_TORCH_INDEX=https://download"):
        plan(tmp_path / "venv", {})
    assert plan(tmp_path / "venv", {"TUNEQ_TORCH_INDEX": "https://download.pytorch.org/whl/cu124"}).cuda


def test_bad_choice_is_one_line_and_exit_2(tmp_path: Path) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "runner.bootstrap", str(tmp_path / "venv")],
        capture_output=True,
        text=True,
        cwd=ROOT,
        env={**os.environ, "TUNEQ_GPU": "yes"},
    )
    assert (result.returncode, result.stderr) == (
        2,
        "just setup: TUNEQ_GPU=yes: use auto (the default), cuda or cpu\n",
    )
    assert not (tmp_path / "venv").exists()


def test_check_gpu_fails_on_a_cpu_build() -> None:
    """The set-up's last check converts and loads the tiny GGUF; a CPU llama-cpp-python puts no layer on a GPU."""
    llama_cpp = pytest.importorskip("llama_cpp")
    if llama_cpp.llama_supports_gpu_offload():
        pytest.skip("this llama-cpp-python offloads to a GPU (the check passes there: docs/benchmarks.md)")
    result = subprocess.run(
        [sys.executable, "-m", "runner.llamacpp", "check-gpu"], capture_output=True, text=True, cwd=ROOT
    )
    assert result.returncode == 1
    assert result.stderr.strip() == (
        "check-gpu: llama.cpp put no layer on a GPU (is llama-cpp-python built with CUDA?)"
    )


def test_the_environments_llama_cpp_has_no_amx_kernels() -> None:
    """llama.cpp's AMX kernels crashed the smoke stage with SIGILL on an AMX VM: set-up builds without them."""
    llama_cpp = pytest.importorskip("llama_cpp")
    info = llama_cpp.llama_print_system_info().decode()
    assert "AMX_INT8 = 1" not in info, info
