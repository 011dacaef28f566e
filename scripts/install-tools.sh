#!/usr/bin/env bash
# Install the Debian packages the tests run as real programs, those not on the PATH yet, in one
# apt-get call:
#   curl, jq       tests/test_readme.py runs the README's quick start (bash, curl, jq)
#   tini           tests/deploy run the image's entrypoint (tini -- bigupload ...)
#   redis-server   shared rate limits, and the compose stack's Redis, in tests/deploy
#   caddy          tests/deploy run the compose stack's Caddyfile in front of bigupload
#
# Usage: scripts/install-tools.sh COMMAND[=PACKAGE]...   (the package is the command's name
# unless given). Idempotent: does nothing if every command is already on the PATH.
set -euo pipefail

missing=()
for tool in "$@"; do
    command -v "${tool%%=*}" >/dev/null 2>&1 || missing+=("${tool#*=}")
done
if ((${#missing[@]} == 0)); then
    echo "install-tools.sh: $* already on the PATH"
    exit 0
fi

sudo=()
if ((EUID != 0)); then
    if command -v sudo >/dev/null 2>&1; then
        sudo=(sudo)
    else
        echo "install-tools.sh: must run as root (or with sudo available) to apt-get install ${missing[*]}" >&2
        exit 1
    fi
fi

if ! command -v apt-get >/dev/null 2>&1; then
    echo "install-tools.sh: no apt-get here; install ${missing[*]} yourself" >&2
    exit 1
fi

"${sudo[@]}" apt-get update -qq
"${sudo[@]}" env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq -o Dpkg::Use-Pty=0 "${missing[@]}"
