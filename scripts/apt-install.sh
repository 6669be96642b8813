#!/usr/bin/env bash
# Sourced by scripts/ensure-*.sh: install Debian packages the test suite needs, as root or
# through sudo, without starting their services (a temporary policy-rc.d denies service
# starts during the install: the tests start their own throwaway servers).
#
#   apt_install <what, for messages> <package>...

apt_install() {
  local what="$1"
  shift
  if ! command -v apt-get >/dev/null 2>&1; then
    echo "error: $what is not installed and apt-get is unavailable: install $* yourself." >&2
    exit 1
  fi
  local sudo=()
  if [[ "$(id -u)" -ne 0 ]]; then
    if command -v sudo >/dev/null 2>&1; then
      sudo=(sudo)
    else
      echo "error: $what is not installed and installing it needs root (no sudo available)." >&2
      echo "       Run as root: apt-get install -y --no-install-recommends $*" >&2
      exit 1
    fi
  fi
  local policy=/usr/sbin/policy-rc.d added_policy=0
  if [[ ! -e "$policy" ]]; then
    # Deny service starts (exit 101) so the packaged servers are not launched.
    printf '#!/bin/sh\nexit 101\n' | "${sudo[@]}" tee "$policy" >/dev/null
    "${sudo[@]}" chmod 755 "$policy"
    added_policy=1
  fi
  echo "$what: installing Debian package(s) $* (apt-get)..."
  local rc=0
  "${sudo[@]}" env DEBIAN_FRONTEND=noninteractive apt-get update -q || rc=$?
  if [[ "$rc" -eq 0 ]]; then
    "${sudo[@]}" env DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends \
      -o Dpkg::Options::=--force-confdef -o Dpkg::Options::=--force-confold "$@" || rc=$?
  fi
  if [[ "$added_policy" -eq 1 ]]; then "${sudo[@]}" rm -f "$policy"; fi
  if [[ "$rc" -ne 0 ]]; then
    echo "error: apt-get failed ($rc) installing $*" >&2
    exit "$rc"
  fi
}
