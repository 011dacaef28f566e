#!/usr/bin/env bash
# Install Debian's caddy for tests/deploy, which run the compose stack's Caddyfile
# (deploy/caddy/Caddyfile) in front of bigupload processes and moto.
#
# Idempotent: does nothing if caddy is on the PATH.
set -euo pipefail

if command -v caddy >/dev/null 2>&1; then
    echo "install-caddy.sh: using caddy $(caddy version | cut -d" " -f1)"
    exit 0
fi

sudo=()
if ((EUID != 0)); then
    if command -v sudo >/dev/null 2>&1; then
        sudo=(sudo)
    else
        echo "install-caddy.sh: must run as root (or with sudo available) to apt-get install caddy" >&2
        exit 1
    fi
fi

if ! command -v apt-get >/dev/null 2>&1; then
    echo "install-caddy.sh: no apt-get here; install caddy yourself" >&2
    exit 1
fi

"${sudo[@]}" apt-get update -qq
"${sudo[@]}" env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq -o Dpkg::Use-Pty=0 caddy
