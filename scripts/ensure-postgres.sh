#!/usr/bin/env bash
# Make sure PostgreSQL server binaries (initdb, pg_ctl) are available for the test suite.
# On Debian/Ubuntu, installs the distribution's `postgresql` package when they are missing.
# The test suite starts its own throwaway server, so the packaged cluster service is never
# started (scripts/apt-install.sh).
set -euo pipefail
source "$(dirname "$0")/apt-install.sh"

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
apt_install postgres postgresql

if initdb_path="$(find_initdb)"; then
  echo "postgres: installed ${initdb_path}"
else
  echo "error: installed 'postgresql' but initdb/pg_ctl still not found." >&2
  exit 1
fi
