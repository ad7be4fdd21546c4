"""Writes a TTT-Video-DiT state dict with Python's safetensors + numpy, as a PyTorch user's
script would save one: float32 values from numpy's generator, metadata {"format": "pt"}.
Usage: write_state_dict.py SPECS_JSON OUT_DIR SHARDS SEED, where SPECS_JSON lists
[{"name": ..., "shape": [...]}]. With SHARDS > 1 it writes model-0000k-of-0000N.safetensors and
model.safetensors.index.json. Prints {name: sha256 of the little-endian bytes} as JSON."""
import hashlib
import json
import os
import sys

import numpy as np
from safetensors.numpy import save_file

specs_file, out_dir, shards, seed = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
with open(specs_file) as f:
    specs = json.load(f)
rng = np.random.default_rng(seed)
tensors = {s["name"]: (rng.standard_normal(s["shape"]) * 0.02).astype("<f4") for s in specs}
os.makedirs(out_dir, exist_ok=True)
names = list(tensors)
if shards == 1:
    save_file(tensors, os.path.join(out_dir, "model.safetensors"), metadata={"format": "pt"})
else:
    weight_map = {}
    for k in range(shards):
        file = f"model-{k + 1:05d}-of-{shards:05d}.safetensors"
        part = {n: tensors[n] for n in names[k::shards]}
        save_file(part, os.path.join(out_dir, file), metadata={"format": "pt"})
        weight_map.update({n: file for n in part})
    total = sum(t.nbytes for t in tensors.values())
    with open(os.path.join(out_dir, "model.safetensors.index.json"), "w") as f:
        json.dump({"metadata": {"total_size": total}, "weight_map": weight_map}, f)
json.dump({n: hashlib.sha256(t.tobytes()).hexdigest() for n, t in tensors.items()}, sys.stdout)
