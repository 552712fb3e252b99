#!/usr/bin/env bash
# Build the container tests' image without a registry: a root filesystem holding the host's C libraries
# that the project's interpreter and virtual environment link against, plus /bin/sh and a few tools,
# imported with `podman import`. The interpreter, the venv and the checkout are bind-mounted read-only at
# run time, at their host paths, so the container runs the very code under test.
#   build-test-image.sh [IMAGE]     (default localhost/tuneq-test:latest; needs podman)
# The venv is $TUNEQ_TEST_VENV, else the checkout's .venv.
set -euo pipefail
image=${1:-localhost/tuneq-test:latest}
root=$(cd "$(dirname "$0")/../.." && pwd)
export CONTAINERS_CONF="$root/tests/container/containers.conf"
venv=${TUNEQ_TEST_VENV:-$root/.venv}
base=$("$venv/bin/python" -c 'import sys; print(sys.base_prefix)')
venv_lib="$venv/lib"
stage=$(mktemp -d)
trap 'rm -rf "$stage"' EXIT

mkdir -p "$stage"/usr/{bin,lib,lib64,sbin} "$stage"/{etc,tmp,home,proc,sys,dev,run,cache/huggingface}
chmod 1777 "$stage/tmp"
for dir in bin lib lib64 sbin; do ln -s "usr/$dir" "$stage/$dir"; done

tools=(dash cat env sleep true id ls)
bins=()
for tool in "${tools[@]}"; do bins+=("$(type -P "$tool")"); done
# Every shared library outside the bind-mounted trees that an executable or extension module needs.
{
    printf '%s\n' "${bins[@]}"
    find "$base/bin" "$base/lib" "$venv_lib" \( -name '*.so' -o -name '*.so.*' -o -name 'python3*' \) -type f
} | tr '\n' '\0' | xargs -0 -n 64 sh -c 'ldd "$@" 2>/dev/null || true' ldd \
    | awk '/=> \//{print $3} /^\t\/.*ld-linux/{print $1}' | sort -u \
    | grep -v -e "^$root/" -e "^$base/" -e '^/usr/local/' >"$stage/.libs"
while read -r lib; do
    dest="$stage$(readlink -f "$(dirname "$lib")")"
    mkdir -p "$dest"
    cp -L "$lib" "$dest/"
done <"$stage/.libs"
rm "$stage/.libs"
for bin in "${bins[@]}"; do cp -L "$bin" "$stage/usr/bin/"; done
ln -s dash "$stage/usr/bin/sh"
printf 'root:x:0:0:root:/root:/bin/sh\ntuneq:x:1000:1000::/home/tuneq:/bin/sh\n' >"$stage/etc/passwd"
printf 'root:x:0:\ntuneq:x:1000:\n' >"$stage/etc/group"

podman rmi -f "$image" >/dev/null 2>&1 || true
tar -C "$stage" -c . | podman import --quiet - "$image" >/dev/null
echo "$image ($(du -sh "$stage" | cut -f1) root filesystem)"
