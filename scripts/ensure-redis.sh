#!/usr/bin/env bash
# Make sure a redis-server binary is available for the test suite (the realtime tests start
# their own throwaway server on loopback). On Debian/Ubuntu, installs the distribution's
# `redis-server` package when it is missing; the packaged service is never started
# (scripts/apt-install.sh).
set -euo pipefail
source "$(dirname "$0")/apt-install.sh"

if command -v redis-server >/dev/null 2>&1; then
  echo "redis: found $(command -v redis-server)"
  exit 0
fi
apt_install redis redis-server
command -v redis-server >/dev/null 2>&1 || { echo "error: redis-server still not on PATH" >&2; exit 1; }
echo "redis: installed $(command -v redis-server)"
