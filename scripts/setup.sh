#!/usr/bin/env bash
# Installs what the project needs on a fresh clone: npm packages (npm ci), the build (tsc),
# and the Temporal CLI (see ensure-temporal.sh). Quick when everything is already there.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
if [[ ! -d node_modules || package-lock.json -nt node_modules/.package-lock.json ]]; then
  echo "ttt-curriculum: installing npm packages (npm ci)" >&2
  npm ci --no-audit --no-fund --loglevel=error >&2
fi
echo "ttt-curriculum: building (tsc)" >&2
npx tsc -p . >&2
bash scripts/ensure-temporal.sh >/dev/null
