#!/usr/bin/env bash
# Install a strict S3-compatible server (LocalStack, no Docker) into its own venv for tests.
# Idempotent: a marker file records the installed requirement set; re-runs are no-ops.
# LocalStack needs Python 3.13 (fails on 3.11/3.12). See tests/support/localstack.py.
set -euo pipefail

REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VENV="${LOCALSTACK_VENV:-$REPO/.venv-localstack}"
MARKER="$VENV/.bigupload-localstack-requirements"

REQUIREMENTS=(
  'localstack-core[runtime]==2026.3.0'
  'cbor2<6'
  'cryptography==45.0.7'
  'pyopenssl==25.1.0'
  'service_identity'
)
WANT="$(printf '%s\n' "${REQUIREMENTS[@]}")"

if [[ -x "$VENV/bin/python" && -f "$MARKER" ]] && [[ "$(cat "$MARKER")" == "$WANT" ]]; then
  echo "localstack: already installed in $VENV"
  exit 0
fi

PY=""
if command -v pyenv >/dev/null 2>&1; then
  candidate="$(pyenv root)/versions/3.13.0/bin/python3.13"
  [[ -x "$candidate" ]] && PY="$candidate"
fi
if [[ -z "$PY" ]] && command -v python3.13 >/dev/null 2>&1 && python3.13 -c 'import sys' >/dev/null 2>&1; then
  PY="$(command -v python3.13)"
fi
if [[ -z "$PY" ]]; then
  echo "install-localstack: Python 3.13 not found (need \$(pyenv root)/versions/3.13.0/bin/python3.13 or python3.13 on PATH)" >&2
  exit 1
fi

if [[ ! -x "$VENV/bin/python" ]]; then
  "$PY" -m venv "$VENV"
fi
rm -f "$MARKER"
# pip -q still prints warnings (e.g. about unreachable extra index dirs); keep them in a log
# and show it only if the install fails.
PIP_LOG="$(mktemp)"
trap 'rm -f "$PIP_LOG"' EXIT
if ! "$VENV/bin/python" -m pip install -q --disable-pip-version-check "${REQUIREMENTS[@]}" >"$PIP_LOG" 2>&1; then
  cat "$PIP_LOG" >&2
  echo "install-localstack: pip install failed (venv: $VENV)" >&2
  exit 1
fi
printf '%s\n' "${REQUIREMENTS[@]}" > "$MARKER"

echo "localstack: installed $("$VENV/bin/python" -m pip show localstack-core 2>/dev/null | sed -n 's/^Version: //p') in $VENV"
