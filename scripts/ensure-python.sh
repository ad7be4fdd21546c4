#!/usr/bin/env bash
# Prints the path of a Python interpreter that has numpy and safetensors (PyPI), for the
# PyTorch interop tests: they check that our checkpoints load in Python's safetensors with
# identical values, and that a state dict written by Python loads here. torch is not needed
# (safetensors.numpy reads and writes the same files). Also Temporal's Python SDK (PyPI
# temporalio, about 15 MB), for the test that drives a job from Python with the README's JSON.
# Installs into the git-ignored .tools/venv (the venv that ensure-temporal.sh may also use);
# quick when already there.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
venv="$root/.tools/venv"
py="$venv/bin/python"
check='import numpy, safetensors.numpy, temporalio.client'
if [[ -n "${TTT_PYTHON:-}" ]]; then py="$TTT_PYTHON"; fi
if [[ -x "$py" ]] && "$py" -c "$check" >/dev/null 2>&1; then echo "$py"; exit 0; fi
{
  if [[ ! -x "$py" ]]; then
    echo "ttt-curriculum: creating $venv"
    mkdir -p "$root/.tools"
    python3 -m venv "$venv"
  fi
  echo "ttt-curriculum: installing numpy, safetensors and temporalio into $(dirname "$(dirname "$py")") (PyPI)"
  "$py" -m pip install -q --disable-pip-version-check 'numpy>=1.24' 'safetensors>=0.4' 'temporalio==1.35.0'
} >&2
if "$py" -c "$check" >/dev/null 2>&1; then echo "$py"; exit 0; fi
echo "ttt-curriculum: could not install numpy, safetensors and temporalio (PyPI). Install them for python3 and set TTT_PYTHON to that interpreter." >&2
exit 1
