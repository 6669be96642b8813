#!/usr/bin/env bash
# Make sure node and npm are available for the JavaScript client tests (tests/js), installing
# Debian's `nodejs` and `npm` packages when they are missing, then install the tests' npm
# packages exactly as locked (npm ci) when the lock file changed.
set -euo pipefail

if ! command -v node >/dev/null 2>&1 || ! command -v npm >/dev/null 2>&1; then
  if ! command -v apt-get >/dev/null 2>&1; then
    echo "error: node/npm not found and apt-get is unavailable: install Node.js (>= 18) and npm." >&2
    exit 1
  fi
  SUDO=()
  if [[ "$(id -u)" -ne 0 ]]; then
    if command -v sudo >/dev/null 2>&1; then
      SUDO=(sudo)
    else
      echo "error: installing nodejs and npm needs root (no sudo available)." >&2
      echo "       Run as root: apt-get install -y --no-install-recommends nodejs npm" >&2
      exit 1
    fi
  fi
  echo "node: installing Debian packages 'nodejs' and 'npm' (apt-get)..."
  "${SUDO[@]}" env DEBIAN_FRONTEND=noninteractive apt-get update -q
  "${SUDO[@]}" env DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends nodejs npm
fi
echo "node: $(command -v node) $(node --version)"

cd "$(dirname "$0")/../tests/js"
stamp=node_modules/.installed
if [[ ! -e "$stamp" || package-lock.json -nt "$stamp" ]]; then
  echo "node: npm ci in tests/js"
  npm ci --no-audit --no-fund --loglevel=error
  touch "$stamp"
fi
