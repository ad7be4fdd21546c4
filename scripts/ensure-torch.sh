#!/usr/bin/env bash
# Prints the path of a Python interpreter that has torch and Hugging Face diffusers, for the
# tests that build their CogVideoX fixture with the real diffusers library
# (test/python/cogvideox_diffusers.py) and write TTT-Video-DiT datasets with torch.
#
# torch is not installed here: it comes from the system (Debian: apt-get install python3-torch,
# 1.13 CPU, about 150 MB to download; .ci/run does it) or from TTT_TORCH_BASE, a Python that
# has it. On top of it, a venv in the git-ignored .tools/torch-venv, created with
# --system-site-packages so that it sees that torch, gets diffusers from PyPI, pinned to the
# versions the fixture was checked with (about 5 MB). Quick when already there.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
venv="$root/.tools/torch-venv"
py="$venv/bin/python"
pins=('diffusers==0.30.3' 'huggingface_hub==0.25.2' 'safetensors==0.4.5')
check='import torch, safetensors.torch, diffusers, huggingface_hub; assert (diffusers.__version__, huggingface_hub.__version__) == ("0.30.3", "0.25.2")'
stamp="$venv/.ttt-pins"
# Importing torch takes seconds: an install that passed the check leaves a stamp naming the pins.
if [[ -x "$py" && "$(cat "$stamp" 2>/dev/null)" == "${pins[*]}" ]]; then echo "$py"; exit 0; fi
if [[ -x "$py" ]] && "$py" -c "$check" >/dev/null 2>&1; then echo "${pins[*]}" >"$stamp"; echo "$py"; exit 0; fi

base=""
for cand in "${TTT_TORCH_BASE:-}" /usr/bin/python3 "$(command -v python3 || true)"; do
  if [[ -n "$cand" && -x "$cand" ]] && "$cand" -c 'import torch' >/dev/null 2>&1; then base="$cand"; break; fi
done
if [[ -z "$base" ]]; then
  echo "ttt-curriculum: no Python with torch (tried \$TTT_TORCH_BASE, /usr/bin/python3, python3). Install it (Debian/Ubuntu: apt-get install python3-torch python3-venv) or set TTT_TORCH_BASE to a Python that has torch, then run bash scripts/ensure-torch.sh." >&2
  exit 1
fi
{
  if [[ ! -x "$py" ]]; then
    echo "ttt-curriculum: creating $venv (on $base, with its site packages: torch $("$base" -c 'import torch; print(torch.__version__)'))"
    mkdir -p "$root/.tools"
    "$base" -m venv --system-site-packages "$venv"
  fi
  echo "ttt-curriculum: installing ${pins[*]} into $venv (PyPI)"
  "$py" -m pip install -q --disable-pip-version-check "${pins[@]}"
} >&2
if "$py" -c "$check" >/dev/null 2>&1; then echo "${pins[*]}" >"$stamp"; echo "$py"; exit 0; fi
echo "ttt-curriculum: $py cannot import torch + diffusers 0.30.3 after installing ${pins[*]}:" >&2
"$py" -c "$check" >&2 || true
exit 1
