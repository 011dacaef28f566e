#!/usr/bin/env bash
# Build the pages tests/browser/test_uppy_clients.py loads: the unmodified @uppy/aws-s3 5.x and
# 6.x from npm (exact versions, committed lockfiles), bundled by esbuild into
# tests/browser/uppy_clients/v{5,6}/dist/harness.js (ignored by git, like node_modules).
# Idempotent: npm ci runs only when the lockfile changed since the last install, and the bundle
# only when a source is newer than it.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../tests/browser/uppy_clients" && pwd)"

if ! command -v npm >/dev/null 2>&1; then
  echo "build-uppy-harness: npm not found; installing Debian's nodejs and npm" >&2
  SUDO=""; [[ "$(id -u)" -ne 0 ]] && SUDO="sudo"
  $SUDO apt-get update -q && $SUDO apt-get install -y -q nodejs npm >/dev/null
fi
if ! command -v npm >/dev/null 2>&1; then
  echo "build-uppy-harness: npm not found (Node.js 18 or newer is needed to build the Uppy test harness)" >&2
  exit 1
fi

for gen in v5 v6; do
  dir="$ROOT/$gen"
  stamp="$dir/node_modules/.package-lock.json"
  if [[ ! -f "$stamp" || "$dir/package-lock.json" -nt "$stamp" || "$dir/package.json" -nt "$stamp" ]]; then
    (cd "$dir" && npm ci --no-audit --no-fund --loglevel=error)
  fi
  out="$dir/dist/harness.js"
  if [[ ! -f "$out" || "$dir/harness.js" -nt "$out" || "$ROOT/harness-common.js" -nt "$out" \
        || "$stamp" -nt "$out" ]]; then
    (cd "$dir" && npm run --silent build -- --log-level=warning)
  fi
  echo "uppy harness $gen: $out"
done
