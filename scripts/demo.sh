#!/usr/bin/env bash
# Run the README's quickstart exactly as written (`make demo`).
#
# The shell block between `<!-- quickstart:begin -->` and `<!-- quickstart:end -->` in README.md
# is extracted (without its ``` fences) and run with `bash -euo pipefail` from the repo root,
# so the README and the demo cannot drift apart. tests/acceptance/test_quickstart.py runs this script too.
#
# Environment: PUSHGATE_PORT (default 8686), LAB_PORT (8687), QUICKSTART_DIR (./var/quickstart).
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
README="$ROOT/README.md"

extract_quickstart() {
  # Print the lines strictly between the markers, dropping the opening/closing code fences.
  awk '
    /<!-- quickstart:begin -->/ { inside = 1; next }
    /<!-- quickstart:end -->/   { inside = 0; exit }
    inside && /^```/            { next }
    inside                      { print }
  ' "$1"
}

BLOCK="$(extract_quickstart "$README")"
if [[ -z "${BLOCK//[[:space:]]/}" ]]; then
  echo "demo: no quickstart block between the quickstart markers in $README" >&2
  exit 2
fi

if [[ ! -x "$ROOT/.venv/bin/pushgate" ]]; then
  echo "demo: $ROOT/.venv/bin/pushgate not found; run 'make venv' first (or use 'make demo')" >&2
  exit 2
fi

cd "$ROOT"
echo "demo: running the README quickstart (pushgate port ${PUSHGATE_PORT:-8686}, lab port ${LAB_PORT:-8687}, dir ${QUICKSTART_DIR:-./var/quickstart})"
echo
set +e
bash -euo pipefail -c "$BLOCK"
rc=$?
set -e
echo
if [[ $rc -eq 0 ]]; then
  echo "demo: OK - the quickstart ran end to end and the lab received every notification"
else
  echo "demo: FAILED (exit $rc) - see the output above and the logs in ${QUICKSTART_DIR:-./var/quickstart}/" >&2
fi
exit "$rc"
