#!/usr/bin/env bash
# Install Debian's chromium for the browser tests (tests/browser): Playwright drives it through
# executable_path, since Playwright's own browser downloads are not reachable here.
#
# Idempotent: does nothing if the browser is already there (BIGUPLOAD_CHROMIUM, default
# /usr/bin/chromium, the path tests/browser/conftest.py uses).
set -euo pipefail

CHROMIUM="${BIGUPLOAD_CHROMIUM:-/usr/bin/chromium}"

if [[ -x "$CHROMIUM" ]]; then
    echo "install-chromium.sh: using $CHROMIUM ($("$CHROMIUM" --version 2>/dev/null || echo 'version unknown'))"
    exit 0
fi

if [[ "$CHROMIUM" != /usr/bin/chromium ]]; then
    echo "install-chromium.sh: BIGUPLOAD_CHROMIUM=$CHROMIUM does not exist or is not executable" >&2
    exit 1
fi

sudo=()
if ((EUID != 0)); then
    if command -v sudo >/dev/null 2>&1; then
        sudo=(sudo)
    else
        echo "install-chromium.sh: must run as root (or with sudo available) to apt-get install chromium" >&2
        exit 1
    fi
fi

if ! command -v apt-get >/dev/null 2>&1; then
    echo "install-chromium.sh: no apt-get here; install Chromium yourself and set BIGUPLOAD_CHROMIUM to it" >&2
    exit 1
fi

"${sudo[@]}" apt-get update -qq
if ! "${sudo[@]}" env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq -o Dpkg::Use-Pty=0 chromium; then
    echo "install-chromium.sh: apt-get install chromium failed (on Ubuntu the package is a snap stub; use Debian's chromium or set BIGUPLOAD_CHROMIUM)" >&2
    exit 1
fi

if [[ ! -x "$CHROMIUM" ]]; then
    echo "install-chromium.sh: chromium installed but $CHROMIUM is missing" >&2
    exit 1
fi
echo "install-chromium.sh: installed $("$CHROMIUM" --version 2>/dev/null || echo "$CHROMIUM")"
