#!/usr/bin/env bash
# Make sure PostgreSQL server binaries (initdb, pg_ctl) are available for the test suite.
# On Debian/Ubuntu, installs the distribution's `postgresql` package when they are missing.
# The test suite starts its own throwaway server, so the packaged cluster service is never
# started (a temporary policy-rc.d denies service starts during the install).
set -euo pipefail

find_initdb() {
  local d
  for d in /usr/lib/postgresql/*/bin; do
    if [[ -x "$d/initdb" && -x "$d/pg_ctl" ]]; then echo "$d/initdb"; return 0; fi
  done
  if command -v initdb >/dev/null 2>&1 && command -v pg_ctl >/dev/null 2>&1; then
    command -v initdb; return 0
  fi
  return 1
}

if initdb_path="$(find_initdb)"; then
  echo "postgres: found ${initdb_path}"
  exit 0
fi

if ! command -v apt-get >/dev/null 2>&1; then
  echo "error: PostgreSQL (initdb/pg_ctl) not found and apt-get is unavailable." >&2
  echo "       Install a PostgreSQL server (>= 13) or set PUSHGATE_TEST_POSTGRES_URL." >&2
  exit 1
fi

SUDO=()
if [[ "$(id -u)" -ne 0 ]]; then
  if command -v sudo >/dev/null 2>&1; then
    SUDO=(sudo)
  else
    echo "error: PostgreSQL is not installed and installing it needs root (no sudo available)." >&2
    echo "       Run as root: apt-get install -y --no-install-recommends postgresql" >&2
    echo "       or set PUSHGATE_TEST_POSTGRES_URL to an existing server." >&2
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
  # Deny service starts (exit 101) so the packaged cluster is not launched.
  printf '#!/bin/sh\nexit 101\n' | "${SUDO[@]}" tee "$policy" >/dev/null
  "${SUDO[@]}" chmod 755 "$policy"
  added_policy=1
fi

echo "postgres: installing Debian package 'postgresql' (apt-get)..."
export DEBIAN_FRONTEND=noninteractive
"${SUDO[@]}" env DEBIAN_FRONTEND=noninteractive apt-get update -q
"${SUDO[@]}" env DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends \
  -o Dpkg::Options::=--force-confdef -o Dpkg::Options::=--force-confold postgresql

if initdb_path="$(find_initdb)"; then
  echo "postgres: installed ${initdb_path}"
else
  echo "error: installed 'postgresql' but initdb/pg_ctl still not found." >&2
  exit 1
fi
