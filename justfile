# tuneq tasks. Get `just` with: pip install rust-just
set shell := ["bash", "-euo", "pipefail", "-c"]

python := env_var_or_default("PYTHON", "python3")
venv := ".venv"
bin := venv + "/bin"

# list the recipes
default:
    @just --list

# install everything into .venv, idempotent (CUDA torch and llama.cpp where nvidia-smi sees a GPU: runner/bootstrap.py)
setup:
    {{python}} -m runner.bootstrap {{venv}}

# run the demo job end to end: tiny model -> LoRA -> merged -> GGUF f16 -> Q4_K_M -> smoke test
demo: setup
    {{bin}}/tuneq validate jobs/demo-tiny.toml
    {{bin}}/tuneq run jobs/demo-tiny.toml

# the test suite (GPU tests skip without a GPU)
test: setup
    {{bin}}/pytest -m "not gpu" -q

# the fast tests only (no training, no containers, no Ray clusters)
test-fast: setup
    {{bin}}/pytest -m "not slow and not gpu and not container and not cluster" -q

# ruff, mypy and the import contracts (pyproject's [tool.importlinter])
lint: setup
    {{bin}}/ruff check .
    {{bin}}/mypy
    {{bin}}/lint-imports

# the core install (`pip install .`, no extras) in a throwaway venv: --help, status, validate, TUI start-up
check-core:
    #!/usr/bin/env bash
    set -euo pipefail
    src="{{justfile_directory()}}"
    tmp=$(mktemp -d)
    trap 'rm -rf "$tmp"' EXIT
    {{python}} -m venv "$tmp/venv"
    # a copy of the checkout's files (setuptools builds in the source folder: keep build/ out of it)
    mkdir "$tmp/src"
    (cd "$src" && git ls-files -co --exclude-standard -z | tar --null -T - --ignore-failed-read -cf - 2>/dev/null) \
        | tar -C "$tmp/src" -xf -
    "$tmp/venv/bin/pip" install -q "$tmp/src"
    export TUNEQ_HOME="$tmp/home"
    cd "$tmp"  # away from the source tree: the installed package runs
    "$tmp/venv/bin/tuneq" --help >/dev/null
    "$tmp/venv/bin/tuneq" status
    "$tmp/venv/bin/tuneq" validate "$src/jobs/demo-tiny.toml"
    "$tmp/venv/bin/python" "$src/.ci/tui_smoke.py" "$src/jobs"

# wall time of the demo job per stage on this machine
bench-demo: setup
    {{bin}}/python bench/bench_demo.py

# the docker backend against a real engine (starts podman's Docker API service; installs podman as root if missing)
test-docker: setup
    {{bin}}/pytest -m container -q

# build the CUDA image (needs a registry, PyPI and the PyTorch index: not possible on machines without them)
image tag="tuneq:latest":
    docker build -t {{tag}} .

# build the CUDA image without a container registry: mmdebstrap base from a Debian mirror + PyPI (Containerfile.mirror)
image-mirror tag="tuneq:latest":
    #!/usr/bin/env bash
    set -euo pipefail
    export CONTAINERS_CONF="$PWD/tests/container/containers.conf"
    podman image exists localhost/tuneq-base:bookworm || image/mirror-base.sh
    podman build --format docker -f Containerfile.mirror -t {{tag}} .

# build Containerfile.mirror on this machine (CPU llama-cpp-python), run the demo job in it through podman; < 60 min on 2 cores
image-check: setup
    PYTHON={{bin}}/python bash tests/container/image-check.sh

# hadolint the Dockerfile and Containerfile.mirror
lint-docker: setup
    {{bin}}/hadolint Dockerfile Containerfile.mirror

# the Dockerfile's and Containerfile.mirror's pins against pyproject's extras and Unsloth's declared ranges
check-pins: setup
    {{bin}}/python -m runner.pins.check

# container start overhead against a local process
bench-container: setup
    {{bin}}/python bench/bench_container.py

# on a CUDA machine: GPU tests and the 1.5B random-weight job through every stage (bench/gpu/README.md)
gpu-smoke:
    bash bench/gpu/smoke.sh

# on a CUDA machine: everything issue 6 asks for in one go (~30 min; bench/gpu/proof.sh; PROOF_STEPS picks steps)
gpu-proof:
    bash bench/gpu/proof.sh

# on a CUDA machine: training throughput, the seeds' ways against tuneq's (docs/benchmarks.md)
bench-gpu:
    bash -c 'source bench/gpu/env.sh && python3 bench/bench_gpu.py --out "$OUT/bench-gpu.json"'

# queue latencies: submit/status with 10,000 jobs, submit -> pipeline start with an idle worker
bench-queue: setup
    {{bin}}/python bench/bench_queue.py
