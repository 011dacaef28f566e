#!/usr/bin/env bash
# Install curl and jq for tests/test_readme.py, which runs the README's quick start (curl and jq
# in bash) against a live server.
#
# Idempotent: does nothing if both are already on the PATH.
set -euo pipefail

missing=()
for tool in curl jq; do
    command -v "$tool" >/dev/null 2>&1 || missing+=("$tool")
done
if ((${#missing[@]} == 0)); then
    echo "install-curl-jq.sh: using $(curl --version | head -n1 | cut -d' ' -f1-2) and $(jq --version)"
    exit 0
fi

sudo=()
if ((EUID != 0)); then
    if command -v sudo >/dev/null 2>&1; then
        sudo=(sudo)
    else
        echo "install-curl-jq.sh: must run as root (or with sudo available) to apt-get install ${missing[*]}" >&2
        exit 1
    fi
fi

if ! command -v apt-get >/dev/null 2>&1; then
    echo "install-curl-jq.sh: no apt-get here; install ${missing[*]} yourself" >&2
    exit 1
fi

"${sudo[@]}" apt-get update -qq
"${sudo[@]}" env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq -o Dpkg::Use-Pty=0 "${missing[@]}"
