#!/usr/bin/env bash
# Installs what the project needs on a fresh clone: npm packages (npm ci), the build (tsc),
# the Temporal CLI (see ensure-temporal.sh), the native TensorFlow backend (see ensure-tfjs-node.sh:
# tfjs-node on every CPU core; with --gpu tfjs-node-gpu and CUDA; TTT_NATIVE=0 skips it, and if
# it cannot be installed the project runs on wasm), Python's numpy + safetensors for the PyTorch
# interop tests (see ensure-python.sh) and diffusers on the system's torch for the tests that
# build their CogVideoX fixture with diffusers (see ensure-torch.sh); it warns when nginx, for the
# TLS tests, is missing (.ci/run installs it with ensure-nginx.sh). Quick when everything is
# already there.
#   bash scripts/setup.sh [--gpu]      (npm run setup [-- --gpu])
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
native_args=()
for a in "$@"; do
  case "$a" in
    --gpu) native_args=(--gpu) ;;
    *) echo "usage: $0 [--gpu]" >&2; exit 2 ;;
  esac
done
if [[ ! -d node_modules || package-lock.json -nt node_modules/.package-lock.json ]]; then
  echo "ttt-curriculum: installing npm packages (npm ci)" >&2
  npm ci --no-audit --no-fund --loglevel=error >&2
fi
echo "ttt-curriculum: building (tsc)" >&2
npx tsc -p . >&2
bash scripts/ensure-temporal.sh >/dev/null
# The GPU package once installed (setup --gpu) stays the one kept up to date.
if [[ ${#native_args[@]} -eq 0 && -d node_modules/@tensorflow/tfjs-node-gpu ]]; then native_args=(--gpu); fi
if native="$(bash scripts/ensure-tfjs-node.sh "${native_args[@]}")"; then
  echo "ttt-curriculum: native backend: $native" >&2
fi
# Only the TLS tests need nginx (.ci/run installs it); setup does not install system packages for a demo.
[[ -x /usr/sbin/nginx ]] || command -v nginx >/dev/null || echo "ttt-curriculum: warning: no nginx; the TLS tests (test/integration/security.test.ts) will fail: run bash scripts/ensure-nginx.sh" >&2
# Only the interop tests need it (CI requires it in .ci/run); a demo goes on without it.
bash scripts/ensure-python.sh >/dev/null || echo "ttt-curriculum: warning: no Python with numpy + safetensors; the PyTorch interop tests will fail" >&2
# The tests that build their CogVideoX fixture with diffusers need it (CI installs torch in .ci/run).
bash scripts/ensure-torch.sh >/dev/null || echo "ttt-curriculum: warning: no Python with torch + diffusers; the conversion and interop tests will fail" >&2
