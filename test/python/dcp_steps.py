"""Writes checkpoint folders as TTT-Video-DiT does, with PyTorch's own Distributed Checkpoint
writer, so that the layout reader's tests read folders that owe nothing to our reader.

Usage: dcp_steps.py RUN_DIR STEP [STEP ...]

For each STEP: RUN_DIR/checkpoint/step-STEP/ gets all_stat_dict.pth first (TTT-Video-DiT's
`MultiLogger.save_multi(..., should_checkpoint=True)` writes it, creating the folder, before the
save: ttt/infra/train_iterator.py `_checkpoint`), then a DCP save of a small state dict with
TTT-Video-DiT's top-level keys (ttt/infra/checkpoint.py: model, optimizer, lr_scheduler,
data_module, metadata), flattened to "model.<name>" keys as torch 2's DCP flattens nested dicts.
TTT-Video-DiT runs torch 2.6 (`dcp.save`, one file per rank); Debian's torch 1.13 has the same
writer as torch.distributed._shard.checkpoint (`save_state_dict`, `FileSystemWriter`), used here
without a process group (no_dist=True) and with one file per item (single_file_per_rank=False),
so that a step folder has several shard files: __0_0.distcp, __0_1.distcp, ... and .metadata.

Also writes RUN_DIR/not-dcp.metadata: a pickle that is not DCP's Metadata.

Prints JSON: {"torch": version, "steps": {STEP: {"files": {relative_path: max offset+length}}}},
the files as torch itself reads them back from .metadata (FileSystemReader.read_metadata).

Needs torch (scripts/ensure-torch.sh).
"""
import dataclasses
import json
import os
import pickle
import sys

# torch 1.13's torch.distributed._shard does not import on Python 3.11: one of its dataclasses
# has a dataclass instance as a field default (sharded_tensor/metadata.py, tensor_properties),
# which 3.11 rejects as mutable. During that import only, such a default becomes a factory.
_get_field = dataclasses._get_field


def _lenient_get_field(cls, name, type_, *rest):
    f = cls.__dict__.get(name, dataclasses.MISSING)
    if isinstance(f, dataclasses.Field) and dataclasses.is_dataclass(f.default) and not isinstance(f.default, type):
        default = f.default
        f.default, f.default_factory = dataclasses.MISSING, (lambda: dataclasses.replace(default))
    return _get_field(cls, name, type_, *rest)


dataclasses._get_field = _lenient_get_field
try:
    import torch
    import torch.distributed._shard.checkpoint as dcp
finally:
    dataclasses._get_field = _get_field


def state_dict(step):
    g = torch.Generator().manual_seed(step)
    model = {
        "model.blocks.0.attn.to_q.weight": torch.randn(8, 8, generator=g),
        "model.blocks.0.ttt.W1": torch.randn(2, 4, 16, generator=g),
        "model.blocks.0.ttt.b1": torch.zeros(2, 1, 16),
        "model.norm_out.bias": torch.randn(8, generator=g),
    }
    optimizer = {f"optimizer.state.{k[6:]}.exp_avg": torch.randn(v.shape, generator=g) for k, v in model.items()}
    return {
        **model,
        **optimizer,
        "lr_scheduler.last_epoch": step,
        "data_module.counter": step * 64,
        "metadata.wandb_id": None,
    }


def main(run_dir, steps):
    out = {"torch": torch.__version__, "steps": {}}
    for step in steps:
        folder = os.path.join(run_dir, "checkpoint", f"step-{step}")
        os.makedirs(folder, exist_ok=True)
        torch.save({"train/loss": [0.5] * step}, os.path.join(folder, "all_stat_dict.pth"))
        writer = dcp.FileSystemWriter(folder, single_file_per_rank=False)
        dcp.save_state_dict(state_dict(step), writer, no_dist=True)
        metadata = dcp.FileSystemReader(folder).read_metadata()
        files = {}
        for info in metadata.storage_data.values():
            files[info.relative_path] = max(files.get(info.relative_path, 0), info.offset + info.length)
        out["steps"][str(step)] = {"files": files}
    with open(os.path.join(run_dir, "not-dcp.metadata"), "wb") as f:
        pickle.dump({"storage_data": {"a": 1}}, f)
    print(json.dumps(out))


if __name__ == "__main__":
    main(sys.argv[1], [int(s) for s in sys.argv[2:]])
