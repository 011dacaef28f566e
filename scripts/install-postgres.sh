#!/usr/bin/env bash
# Install the PostgreSQL server binaries needed by the test suite
# (tests/support/postgres.py starts its own throwaway server from them).
#
# Idempotent: does nothing if an initdb already exists under
# /usr/lib/postgresql/*/bin/. Never starts or enables the system cluster
# service itself (the Debian package may start one; the tests don't use it).
set -euo pipefail
shopt -s nullglob

find_initdb() {
    local candidates=(/usr/lib/postgresql/*/bin/initdb)
    ((${#candidates[@]} > 0)) || return 1
    printf '%s\n' "${candidates[@]}" | sort -V | tail -n 1
}

if ! initdb_path="$(find_initdb)"; then
    sudo=()
    if ((EUID != 0)); then
        if command -v sudo >/dev/null 2>&1; then
            sudo=(sudo)
        else
            echo "install-postgres.sh: must run as root (or with sudo available)" >&2
            exit 1
        fi
    fi
    "${sudo[@]}" apt-get update -qq
    "${sudo[@]}" env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq -o Dpkg::Use-Pty=0 postgresql
    if ! initdb_path="$(find_initdb)"; then
        echo "install-postgres.sh: postgresql installed but no initdb under /usr/lib/postgresql/*/bin/" >&2
        exit 1
    fi
fi

echo "install-postgres.sh: using initdb at ${initdb_path}"
