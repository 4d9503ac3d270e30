#!/usr/bin/env bash
# The container image the isolation tests run in, built without any registry:
# mmdebstrap makes a minimal Debian root from apt's configured mirror, podman imports
# it. Cached: nothing happens when the image is already there.
set -euo pipefail
image=${OTTO_TEST_IMAGE:-localhost/otto-test:bookworm}
if podman image exists "$image"; then
    exit 0
fi
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
mmdebstrap --quiet --variant=minbase --include=ca-certificates,git,python3 \
    bookworm "$tmp/rootfs.tar"
podman import --quiet "$tmp/rootfs.tar" "$image" >/dev/null
echo "built $image"
