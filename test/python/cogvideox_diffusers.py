"""Builds a CogVideoX transformer with the real Hugging Face diffusers library and saves it as
diffusers does (save_pretrained: config.json, BF16 safetensors shards and their index), so that
the conversion tests read a folder that owes nothing to our own key map or parameter shapes.

Usage: cogvideox_diffusers.py OUT_DIR SIZES_JSON SEED MAX_SHARD_SIZE DTYPE
  SIZES_JSON: the eight [model] sizes ({"num_layers": 2, ...}); every other config field is
  CogVideoX-5B's. MAX_SHARD_SIZE: save_pretrained's, e.g. "40KB" (one file when the model fits).
  DTYPE: bfloat16 (CogVideoX-5B's), float16 or float32.

Every parameter gets its own random values (the default init has many all-ones norms and
all-zero biases, which would hide two swapped tensors). Prints JSON: the versions, the files
written, and for every tensor of the state dict, as torch holds it after the cast to DTYPE:
dtype, shape, sha256 of its raw bytes and of its float32 values (C order, little-endian), and
the TTT-Video-DiT name that TTT-Video-DiT's own converter gives it (see ttt_video_dit_name).

Needs torch and diffusers==0.30.3 (scripts/ensure-torch.sh).
"""
import hashlib
import json
import os
import re
import sys

import torch
import safetensors.torch  # noqa: F401  (diffusers 0.30 on torch 1.13 needs it imported first)
import torch.nn.functional as F

if not hasattr(F, "scaled_dot_product_attention"):
    # diffusers 0.30 refuses to build its attention processor on torch < 2.0 without it. Nothing
    # here runs a forward pass, so a stand-in that fails loudly if called is enough.
    def _no_sdpa(*args, **kwargs):
        raise RuntimeError("scaled_dot_product_attention stand-in: this script runs no forward pass")

    F.scaled_dot_product_attention = _no_sdpa

import diffusers
from diffusers import CogVideoXTransformer3DModel

# CogVideoX-5B's transformer/config.json (THUDM/CogVideoX-5b), sizes replaced from SIZES_JSON.
COGVIDEOX_5B = dict(
    num_attention_heads=48,
    attention_head_dim=64,
    in_channels=16,
    out_channels=16,
    flip_sin_to_cos=True,
    freq_shift=0,
    time_embed_dim=512,
    text_embed_dim=4096,
    num_layers=42,
    dropout=0.0,
    attention_bias=True,
    sample_width=90,
    sample_height=60,
    sample_frames=49,
    patch_size=2,
    temporal_compression_ratio=4,
    max_text_seq_length=226,
    activation_fn="gelu-approximate",
    timestep_activation_fn="silu",
    norm_elementwise_affine=True,
    norm_eps=1e-5,
    spatial_interpolation_scale=1.875,
    temporal_interpolation_scale=1.0,
    use_rotary_positional_embeddings=True,
)

# The names TTT-Video-DiT's converter gives diffusers' tensors, written from
# ttt/models/cogvideo/weight_conversion/from_hf.py in github.com/test-time-training/ttt-video-dit
# (its chain of `if "<diffusers stem>.<weight|bias>" in key`), not from this project's key map:
# it is the reference the conversion is tested against.
TOP = {
    "patch_embed.proj": "dit.patch_embedding.vid_proj",
    "patch_embed.text_proj": "dit.patch_embedding.text_proj",
    "norm_final": "dit.transformer_norm",
    "norm_out.norm": "dit.final_layer.norm",
    "norm_out.linear": "dit.final_layer.adaLN_modulation.1",
    "proj_out": "dit.final_layer.linear",
    "time_embedding.linear_1": "dit.time_embed.0",
    "time_embedding.linear_2": "dit.time_embed.2",
}
BLOCK = {
    "attn1.norm_q": "seq_modeling_block.q_norm",
    "attn1.norm_k": "seq_modeling_block.k_norm",
    "ff.net.0.proj": "mlp.layer1",
    "ff.net.2": "mlp.layer2",
    "norm1.linear": "pre_seq_adaLN_modulation.1",
    "norm1.norm": "pre_seq_layernorm",
    "norm2.linear": "pre_mlp_adaLN_modulation.1",
    "norm2.norm": "pre_mlp_layernorm",
    "attn1.to_q": "seq_modeling_block.q",
    "attn1.to_k": "seq_modeling_block.k",
    "attn1.to_v": "seq_modeling_block.v",
    "attn1.to_out.0": "seq_modeling_block.o",
}


def ttt_video_dit_name(key):
    """TTT-Video-DiT's name for a diffusers key (None: its converter drops the tensor)."""
    m = re.fullmatch(r"(.+)\.(weight|bias)", key)
    if not m:
        return None
    stem, suffix = m.groups()
    if stem in TOP:
        return f"{TOP[stem]}.{suffix}"
    b = re.fullmatch(r"transformer_blocks\.(\d+)\.(.+)", stem)
    if b and b.group(2) in BLOCK:
        return f"dit.layers.{int(b.group(1))}.{BLOCK[b.group(2)]}.{suffix}"
    return None


def sha256(t):
    """sha256 of a tensor's values in C order, little-endian."""
    a = t.contiguous().numpy()
    return hashlib.sha256(a.astype(a.dtype.newbyteorder("<"), copy=False).tobytes()).hexdigest()


def main(out_dir, sizes_json, seed, max_shard_size, dtype):
    assert dtype in ("bfloat16", "float16", "float32"), dtype
    sizes = json.loads(sizes_json)
    model = CogVideoXTransformer3DModel(**{**COGVIDEOX_5B, **sizes})
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in sorted(model.named_parameters()):
            p.copy_(torch.randn(p.shape, generator=g) * 0.5)
    model = model.to(getattr(torch, dtype))
    model.save_pretrained(out_dir, safe_serialization=True, max_shard_size=max_shard_size)
    tensors = {}
    for name, t in model.state_dict().items():
        tensors[name] = {
            "dtype": str(t.dtype).replace("torch.", ""),
            "shape": list(t.shape),
            # torch 1.13 has no bfloat16 numpy dtype: the raw bytes through an int16 view.
            "sha256_raw": sha256(t.view(torch.int16) if t.dtype == torch.bfloat16 else t),
            "sha256_f32": sha256(t.float()),
            "ttt_name": ttt_video_dit_name(name),
        }
    json.dump(
        {
            "torch": torch.__version__,
            "diffusers": diffusers.__version__,
            "files": sorted(os.listdir(out_dir)),
            "tensors": tensors,
        },
        sys.stdout,
    )


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2], int(sys.argv[3]), sys.argv[4], sys.argv[5])
