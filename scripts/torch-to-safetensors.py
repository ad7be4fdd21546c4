"""Rewrites tensors saved with torch.save (.pt) as safetensors files, for `ttt-curriculum
dataset import`. Needs only torch (numpy makes it faster); the safetensors file is written
here (an 8-byte header length, a JSON header, the raw little-endian bytes), so the
`safetensors` package is not needed.

Protocol: one JSON object per line on stdin, {"src": ".pt file", "dst": ".safetensors file",
"name": "tensor name"}. Prints one JSON line first, {"torch": version, "weights_only": bool},
then one per task, in order: {"dst", "dtype", "shape"} or {"dst", "error"}. A dst is written to
a temporary name beside it and renamed into place, so it is complete or absent.

A file must hold one tensor (or a dict/list holding exactly one). torch.load runs with
weights_only=True where the torch version has it (1.13+): a pickle cannot run code then.
"""
import inspect
import json
import os
import sys

import torch

DTYPES = {torch.bfloat16: "BF16", torch.float16: "F16", torch.float32: "F32"}
WEIGHTS_ONLY = "weights_only" in inspect.signature(torch.load).parameters


def load(src):
    kwargs = {"map_location": "cpu"}
    if WEIGHTS_ONLY:
        kwargs["weights_only"] = True
    obj = torch.load(src, **kwargs)
    found = [obj] if torch.is_tensor(obj) else []
    if isinstance(obj, dict):
        found = [v for v in obj.values() if torch.is_tensor(v)]
    elif isinstance(obj, (list, tuple)):
        found = [v for v in obj if torch.is_tensor(v)]
    if len(found) != 1:
        raise ValueError(f"holds {type(obj).__name__} with {len(found)} tensors; expected exactly one tensor")
    return found[0]


def raw_bytes(t):
    """The tensor's values in C order as little-endian bytes (only the view, not its whole storage)."""
    t = t.detach().contiguous()
    same_size = {torch.bfloat16: torch.int16, torch.float16: torch.int16, torch.float32: torch.int32}[t.dtype]
    try:
        return t.view(same_size).numpy().tobytes()
    except (ImportError, RuntimeError, TypeError):  # torch without numpy
        return bytes(t.view(torch.uint8).flatten().tolist())


def write(dst, name, t):
    if t.dtype == torch.float64:
        t = t.float()
    if t.dtype not in DTYPES:
        raise ValueError(f"dtype {t.dtype} is not a float type (bfloat16, float16, float32, float64)")
    data = raw_bytes(t)
    header = {name: {"dtype": DTYPES[t.dtype], "shape": list(t.shape), "data_offsets": [0, len(data)]}}
    header["__metadata__"] = {"format": "pt"}
    h = json.dumps(header, separators=(",", ":")).encode()
    h += b" " * (-len(h) % 8)
    os.makedirs(os.path.dirname(dst) or ".", exist_ok=True)
    tmp = f"{dst}.tmp-{os.getpid()}"
    with open(tmp, "wb") as f:
        f.write(len(h).to_bytes(8, "little"))
        f.write(h)
        f.write(data)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, dst)
    return DTYPES[t.dtype], list(t.shape)


def main():
    if sys.byteorder != "little":
        raise SystemExit("this converter writes little-endian bytes from memory: run it on a little-endian machine")
    print(json.dumps({"torch": torch.__version__, "weights_only": WEIGHTS_ONLY}), flush=True)
    for line in sys.stdin:
        if not line.strip():
            continue
        task = json.loads(line)
        try:
            dtype, shape = write(task["dst"], task["name"], load(task["src"]))
            out = {"dst": task["dst"], "dtype": dtype, "shape": shape}
        except Exception as e:  # reported per file; the caller lists every failure
            out = {"dst": task["dst"], "error": f"{type(e).__name__}: {e}"}
        print(json.dumps(out), flush=True)


if __name__ == "__main__":
    main()
