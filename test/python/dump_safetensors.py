"""Loads safetensors files with Python's safetensors + numpy (as PyTorch users would, without
torch) and prints, as JSON, every tensor's dtype, shape and the sha256 of its little-endian
bytes, plus each file's metadata. Usage: dump_safetensors.py FILE_OR_FOLDER...
A folder means model.safetensors, or the shards its model.safetensors.index.json lists."""
import hashlib
import json
import os
import sys

import numpy as np
from safetensors import safe_open
from safetensors.numpy import load_file


def files_of(arg):
    if not os.path.isdir(arg):
        return [arg]
    index = os.path.join(arg, "model.safetensors.index.json")
    if os.path.exists(index):
        with open(index) as f:
            weight_map = json.load(f)["weight_map"]
        return [os.path.join(arg, name) for name in sorted(set(weight_map.values()))]
    return [os.path.join(arg, "model.safetensors")]


out = {"tensors": {}, "metadata": {}}
for arg in sys.argv[1:]:
    for path in files_of(arg):
        with safe_open(path, framework="numpy") as f:
            out["metadata"][os.path.basename(path)] = f.metadata()
        for name, arr in load_file(path).items():
            le = arr.astype(arr.dtype.newbyteorder("<"), copy=False)
            out["tensors"][name] = {
                "dtype": str(arr.dtype),
                "shape": list(arr.shape),
                "sha256": hashlib.sha256(np.ascontiguousarray(le).tobytes()).hexdigest(),
            }
json.dump(out, sys.stdout)
