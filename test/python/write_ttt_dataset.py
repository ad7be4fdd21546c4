"""Writes a TTT-Video-DiT precomputed dataset with torch, the way its data/precomp_video.py and
data/precomp_text.py save one: torch.save of a BF16 VAE posterior [T, 2C, H, W] per video
(made contiguous after a permute), and of one T5 embedding [L, E] per 3-second segment, each a
row of a batch tensor (so the file's storage is the whole batch), listed in a JSONL file
{"vid_emb": ..., "text_chunk_emb": [...]} with paths relative to the folder; one line names its
video by absolute path.

Usage: write_ttt_dataset.py OUT_DIR DIMS_JSON SAMPLES SEED
  DIMS_JSON: {"T", "C", "H", "W", "L", "E", "segments"} (C: latent channels; the file has 2C).
Prints JSON {relative path: {"dtype", "shape", "sha256_f32"}} of every tensor file written.
"""
import hashlib
import json
import os
import sys

import torch


def sha256_f32(t):
    a = t.float().contiguous().numpy()
    return hashlib.sha256(a.astype("<f4", copy=False).tobytes()).hexdigest()


def main(out_dir, dims_json, samples, seed):
    d = json.loads(dims_json)
    g = torch.Generator().manual_seed(seed)
    written = {}
    lines = []
    for n in range(samples):
        episode = f"episode_{n // 2:03d}"
        vid = os.path.join("vae_latents", episode, f"video_sample_{n:04d}.pt")
        os.makedirs(os.path.join(out_dir, os.path.dirname(vid)), exist_ok=True)
        # Encoded as [2C, T, H, W], saved permuted to [T, 2C, H, W] like precomp_video.py.
        enc = torch.randn(2 * d["C"], d["T"], d["H"], d["W"], generator=g).to(torch.bfloat16)
        posterior = enc.permute(1, 0, 2, 3).contiguous()
        torch.save(posterior, os.path.join(out_dir, vid))
        written[vid] = posterior
        batch = torch.randn(d["segments"], d["L"], d["E"], generator=g).to(torch.bfloat16)
        texts = []
        for i in range(d["segments"]):
            rel = os.path.join("text_embeddings", episode, f"video_sample_{n:04d}_seg{i}_txt_emb.pt")
            os.makedirs(os.path.join(out_dir, os.path.dirname(rel)), exist_ok=True)
            torch.save(batch[i], os.path.join(out_dir, rel))  # a view: the whole batch's storage is saved
            written[rel] = batch[i]
            texts.append(rel)
        vid_in_jsonl = os.path.abspath(os.path.join(out_dir, vid)) if n == samples - 1 else vid
        lines.append(json.dumps({"vid_emb": vid_in_jsonl, "text_chunk_emb": texts}))
    with open(os.path.join(out_dir, "train_3s.jsonl"), "w") as f:
        f.write("\n".join(lines) + "\n")
    json.dump(
        {k: {"dtype": str(t.dtype).replace("torch.", ""), "shape": list(t.shape), "sha256_f32": sha256_f32(t)}
         for k, t in written.items()},
        sys.stdout,
    )


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4]))
