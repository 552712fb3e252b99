#!/usr/bin/env bash
# `just image-check`: build the image from Containerfile.mirror without a container registry (Debian and
# PyPI mirrors only), then run the demo job in it through the docker backend against podman's Docker API,
# as the image's non-root user, and print the image size, the build time, the start-up time and the job's
# report. Sized for a 2-core machine: under 60 minutes, so not part of CI.
#
# Environment (all optional):
#   IMAGE_CHECK_LLAMA_CUDA=off|on  llama-cpp-python with CUDA or CPU-only (default off: compiling CUDA
#                                  kernels does not fit 2 cores and an hour)
#   IMAGE_CHECK_CUDA_ARCH=90       the one compute capability compiled when IMAGE_CHECK_LLAMA_CUDA=on
#   IMAGE_CHECK_TORCH=VERSION      torch to install (default: Containerfile.mirror's, the CUDA 13.0 build
#                                  from PyPI, several GB); e.g. 2.13.0+cpu with a wheel in the wheelhouse
#   IMAGE_CHECK_WHEELHOUSE=DIR     local wheels pip may take before PyPI (mounted at /wheelhouse)
#   IMAGE_CHECK_REBUILD_BASE=1     rebuild the mmdebstrap base even if localhost/tuneq-base:bookworm exists
#   IMAGE_CHECK_NO_CACHE=1         build every layer again (podman build --no-cache): a cold build's time
#   DEBIAN_MIRROR, PIP_INDEX_URL   the mirrors (PIP_INDEX_URL is passed into the build)
#   PYTHON                         the interpreter with tuneq's dependencies (default .venv/bin/python)
set -euo pipefail
root=$(cd "$(dirname "$0")/../.." && pwd)
here="$root/tests/container"
export CONTAINERS_CONF="$here/containers.conf"
python=${PYTHON:-$root/.venv/bin/python}
image=localhost/tuneq:image-check
base=localhost/tuneq-base:bookworm
llama_cuda=${IMAGE_CHECK_LLAMA_CUDA:-off}
work=$(mktemp -d /tmp/tuneq-image-check.XXXXXX)
sock="$work/podman.sock"
heavy=(nice -n 19 ionice -c3)
cleanup() {
    "$here/podman-service.sh" stop "$sock" || true
    rm -rf "$work"
}
trap cleanup EXIT

if ! command -v podman >/dev/null || ! command -v mmdebstrap >/dev/null; then
    if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
        echo "installing podman, runc and mmdebstrap with apt-get"
        apt-get update -qq
        DEBIAN_FRONTEND=noninteractive apt-get install -y -qq podman runc mmdebstrap >/dev/null
    else
        echo "needs podman, runc and mmdebstrap (apt-get install podman runc mmdebstrap)" >&2
        exit 3
    fi
fi

t0=$(date +%s)
if [ "${IMAGE_CHECK_REBUILD_BASE:-0}" = 1 ] || ! podman image exists "$base"; then
    "${heavy[@]}" "$root/image/mirror-base.sh" "$base"
fi
t1=$(date +%s)

args=(--build-arg "LLAMA_CUDA=$llama_cuda" --build-arg BUILD_JOBS=2)
if [ "$llama_cuda" = on ]; then
    arch=${IMAGE_CHECK_CUDA_ARCH:-90}
    args+=(--build-arg "CUDA_ARCHITECTURES=$arch")
    llama_said="llama-cpp-python built WITH CUDA for compute capability $arch only"
else
    llama_said="llama-cpp-python built for the CPU ONLY (LLAMA_CUDA=off; the image users get has CUDA)"
fi
if [ -n "${IMAGE_CHECK_TORCH:-}" ]; then
    args+=(--build-arg "TORCH_VERSION=$IMAGE_CHECK_TORCH")
fi
case "${IMAGE_CHECK_TORCH:-}" in
"") torch_said="torch $(sed -n 's/^ARG TORCH_VERSION=//p' "$root/Containerfile.mirror"), the CUDA 13.0 build from PyPI" ;;
*+cpu) torch_said="torch $IMAGE_CHECK_TORCH: a CPU build of torch, NOT the CUDA one users get" ;;
*) torch_said="torch $IMAGE_CHECK_TORCH" ;;
esac
if [ -n "${IMAGE_CHECK_WHEELHOUSE:-}" ]; then
    args+=(-v "$(cd "$IMAGE_CHECK_WHEELHOUSE" && pwd):/wheelhouse:ro")
fi
[ -n "${PIP_INDEX_URL:-}" ] && args+=(--build-arg "PIP_INDEX_URL=$PIP_INDEX_URL")
[ "${IMAGE_CHECK_NO_CACHE:-0}" = 1 ] && args+=(--no-cache)
# The host's CA bundle, for networks whose HTTPS to the mirrors passes a local certificate authority.
[ -f /etc/ssl/certs/ca-certificates.crt ] && args+=(-v /etc/ssl/certs/ca-certificates.crt:/etc/ssl/certs/ca-certificates.crt:ro)

echo "building $image: $llama_said; $torch_said"
"${heavy[@]}" podman build --format docker -f "$root/Containerfile.mirror" -t "$image" "${args[@]}" "$root"
t2=$(date +%s)

bytes=$(podman image inspect --format '{{.Size}}' "$image")
# Start-up: a container of the image until `tuneq --version` has answered, then until torch is imported.
s0=$(date +%s.%N)
podman run --rm --network none "$image" tuneq --version
s1=$(date +%s.%N)
podman run --rm --network none "$image" python -c 'import torch, runner.pipeline; print("torch", torch.__version__)'
s2=$(date +%s.%N)
podman run --rm --network none "$image" test -s /usr/share/doc/tuneq/NOTICE
user=$(podman run --rm --network none "$image" id -un)

"$here/podman-service.sh" start "$sock"
t3=$(date +%s)
status=0
PYTHONPATH="$root" "${heavy[@]}" "$python" "$here/image_demo.py" "$image" "unix://$sock" "$work" || status=$?
t4=$(date +%s)

cat <<SUMMARY

== image-check summary ==
image:            $image ($(awk -v b="$bytes" 'BEGIN {printf "%.2f GB", b / 1e9}'), $bytes bytes), runs as user $user
what was built:   $llama_said; $torch_said
base (mmdebstrap): $((t1 - t0)) s$([ $((t1 - t0)) -lt 2 ] && echo " (reused $base)")
build:            $((t2 - t1)) s
start-up:         tuneq --version $(awk -v a="$s0" -v b="$s1" 'BEGIN {printf "%.1f", b - a}') s, import torch + pipeline $(awk -v a="$s1" -v b="$s2" 'BEGIN {printf "%.1f", b - a}') s
demo job:         $((t4 - t3)) s, $([ "$status" = 0 ] && echo passed || echo FAILED)
total:            $((t4 - t0)) s
SUMMARY
exit "$status"
