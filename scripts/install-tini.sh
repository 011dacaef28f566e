#!/usr/bin/env bash
# Install Debian's tini for tests/deploy, which run the container's entrypoint
# (`tini -e 143 -- bigupload ...`) as a process, as the image does.
#
# Idempotent: does nothing if /usr/bin/tini is there.
set -euo pipefail

if [ -x /usr/bin/tini ]; then
    echo "install-tini.sh: using $(/usr/bin/tini --version)"
    exit 0
fi

sudo=()
if ((EUID != 0)); then
    if command -v sudo >/dev/null 2>&1; then
        sudo=(sudo)
    else
        echo "install-tini.sh: must run as root (or with sudo available) to apt-get install tini" >&2
        exit 1
    fi
fi

if ! command -v apt-get >/dev/null 2>&1; then
    echo "install-tini.sh: no apt-get here; install tini (as /usr/bin/tini) yourself" >&2
    exit 1
fi

"${sudo[@]}" apt-get update -qq
"${sudo[@]}" env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq -o Dpkg::Use-Pty=0 tini
