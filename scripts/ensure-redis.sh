#!/usr/bin/env bash
# Make sure a redis-server binary is available for the test suite (the realtime tests start
# their own throwaway server on loopback). On Debian/Ubuntu, installs the distribution's
# `redis-server` package when it is missing; the packaged service is never started (a
# temporary policy-rc.d denies service starts during the install).
set -euo pipefail

if command -v redis-server >/dev/null 2>&1; then
  echo "redis: found $(command -v redis-server)"
  exit 0
fi

if ! command -v apt-get >/dev/null 2>&1; then
  echo "error: redis-server not found and apt-get is unavailable." >&2
  echo "       Install Redis (>= 6) so that redis-server is on PATH." >&2
  exit 1
fi

SUDO=()
if [[ "$(id -u)" -ne 0 ]]; then
  if command -v sudo >/dev/null 2>&1; then
    SUDO=(sudo)
  else
    echo "error: redis-server is not installed and installing it needs root (no sudo available)." >&2
    echo "       Run as root: apt-get install -y --no-install-recommends redis-server" >&2
    exit 1
  fi
fi

policy=/usr/sbin/policy-rc.d
added_policy=0
cleanup() {
  if [[ "$added_policy" -eq 1 ]]; then "${SUDO[@]}" rm -f "$policy"; fi
}
trap cleanup EXIT
if [[ ! -e "$policy" ]]; then
  # Deny service starts (exit 101) so the packaged server is not launched.
  printf '#!/bin/sh\nexit 101\n' | "${SUDO[@]}" tee "$policy" >/dev/null
  "${SUDO[@]}" chmod 755 "$policy"
  added_policy=1
fi

echo "redis: installing Debian package 'redis-server' (apt-get)..."
"${SUDO[@]}" env DEBIAN_FRONTEND=noninteractive apt-get update -q
"${SUDO[@]}" env DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends \
  -o Dpkg::Options::=--force-confdef -o Dpkg::Options::=--force-confold redis-server
command -v redis-server >/dev/null 2>&1 || { echo "error: redis-server still not on PATH" >&2; exit 1; }
echo "redis: installed $(command -v redis-server)"
