#!/usr/bin/env bash
# Make sure node and npm are available for the JavaScript client tests (tests/js), installing
# Debian's `nodejs` and `npm` packages when they are missing, then install the tests' npm
# packages exactly as locked (npm ci) when the lock file changed.
set -euo pipefail
source "$(dirname "$0")/apt-install.sh"

if ! command -v node >/dev/null 2>&1 || ! command -v npm >/dev/null 2>&1; then
  apt_install node nodejs npm
fi
echo "node: $(command -v node) $(node --version)"

cd "$(dirname "$0")/../tests/js"
stamp=node_modules/.installed
if [[ ! -e "$stamp" || package-lock.json -nt "$stamp" ]]; then
  echo "node: npm ci in tests/js"
  npm ci --no-audit --no-fund --loglevel=error
  touch "$stamp"
fi
