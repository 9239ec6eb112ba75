#!/usr/bin/env bash
# Builds the spcvm container image (deploy/docker/Dockerfile) with docker or podman.
#
#   scripts/image.sh [TAG]                     # default tag: spcvm:<workspace version>
#   CONTAINER=podman scripts/image.sh ghcr.io/example/spcvm:0.1.0
#   scripts/image.sh TAG --build-arg RUST_IMAGE=registry.example.com/rust:1.89-bookworm
#
# Extra arguments after the tag go to `build` unchanged.
set -euo pipefail
cd "$(dirname "$0")/.."
version=$(sed -n '/^version = "\(.*\)"/{s//\1/p;q}' Cargo.toml)
tag=${1:-spcvm:$version}
shift $(( $# > 0 ? 1 : 0 ))
engine=${CONTAINER:-}
if [[ -z $engine ]]; then
    if command -v docker >/dev/null 2>&1; then
        engine=docker
    elif command -v podman >/dev/null 2>&1; then
        engine=podman
    else
        echo "image.sh: neither docker nor podman is installed (or set CONTAINER=...)" >&2
        exit 1
    fi
fi
export DOCKER_BUILDKIT=1
"$engine" build -f deploy/docker/Dockerfile -t "$tag" "$@" .
echo "image.sh: built $tag with $engine"
