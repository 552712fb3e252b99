#!/usr/bin/env bash
# The base of Containerfile.mirror without a container registry: a minimal Debian root filesystem made by
# mmdebstrap from a Debian mirror, imported with `podman import`.
#   image/mirror-base.sh [IMAGE] [MIRROR]
#     IMAGE   default localhost/tuneq-base:bookworm (Containerfile.mirror's BASE)
#     MIRROR  default $DEBIAN_MIRROR, else http://deb.debian.org/debian (any Debian mirror, e.g. a local one)
# Needs root (or mmdebstrap's unshare mode), mmdebstrap and podman (`apt-get install mmdebstrap podman`).
set -euo pipefail
image=${1:-localhost/tuneq-base:bookworm}
mirror=${2:-${DEBIAN_MIRROR:-http://deb.debian.org/debian}}
suite=bookworm # Debian 12: Python 3.11, as tuneq's reference environment
for tool in mmdebstrap podman; do
    command -v "$tool" >/dev/null || {
        echo "$tool is not installed: apt-get install -y mmdebstrap podman runc" >&2
        exit 3
    }
done
tarball=$(mktemp --suffix=.tar)
trap 'rm -f "$tarball"' EXIT
# minbase: essential packages and apt; the mirror stays in the image's sources.list for the apt-get steps.
mmdebstrap --quiet --variant=minbase --include=ca-certificates \
    --aptopt='APT::Install-Recommends "false"' \
    --customize-hook='rm -rf "$1"/var/lib/apt/lists/* "$1"/var/cache/apt/*' \
    "$suite" "$tarball" "$mirror"
podman import --quiet --change 'CMD ["/bin/bash"]' "$tarball" "$image" >/dev/null
echo "$image: Debian $suite from $mirror ($(du -h "$tarball" | cut -f1) root filesystem)"
