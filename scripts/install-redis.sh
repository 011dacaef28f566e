#!/usr/bin/env bash
# Install Debian's redis-server for tests/deploy, which run the compose services with
# their Redis-backed rate limits (tests/support/redis.py starts it on a free port).
#
# Idempotent: does nothing if redis-server is on the PATH.
set -euo pipefail

if command -v redis-server >/dev/null 2>&1; then
    echo "install-redis.sh: using $(redis-server --version | cut -d" " -f1-3)"
    exit 0
fi

sudo=()
if ((EUID != 0)); then
    if command -v sudo >/dev/null 2>&1; then
        sudo=(sudo)
    else
        echo "install-redis.sh: must run as root (or with sudo available) to apt-get install redis-server" >&2
        exit 1
    fi
fi

if ! command -v apt-get >/dev/null 2>&1; then
    echo "install-redis.sh: no apt-get here; install redis-server yourself" >&2
    exit 1
fi

"${sudo[@]}" apt-get update -qq
"${sudo[@]}" env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq -o Dpkg::Use-Pty=0 redis-server
