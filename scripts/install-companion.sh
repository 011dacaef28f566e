#!/usr/bin/env bash
# Install Uppy Companion (the version pinned in bench/companion/package.json and its lock file)
# into bench/companion/node_modules, for bench/create_upload.py's `companion` target.
#
# Idempotent: does nothing when the pinned version is already installed. Needs node and npm
# (Companion 6 wants node ^20.19.3 or >= 22).
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)/bench/companion"
want="$(node -p "require('${here}/package.json').dependencies['@uppy/companion']")"
have="$(node -p "try { require('${here}/node_modules/@uppy/companion/package.json').version } catch { '' }")"
if [[ "${have}" == "${want}" ]]; then
    echo "install-companion.sh: @uppy/companion ${have} already in ${here}/node_modules"
    exit 0
fi
cd "${here}"
npm ci --no-audit --no-fund --omit=dev --loglevel=error
echo "install-companion.sh: installed @uppy/companion ${want} in ${here}/node_modules"
