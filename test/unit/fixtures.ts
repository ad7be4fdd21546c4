/**
 * Shared fixtures of the tests: the tiny model's sizes as a CogVideoX diffusers config, and a
 * CogVideoX transformer of those sizes written by the real diffusers library.
 */
import assert from 'node:assert/strict';
import * as crypto from 'node:crypto';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { loadStageConfig } from '../../src/config/load';
import type { DiffusersConfig } from '../../src/convert/diffusers';
import { pythonWithTorch, ROOT, runPython, tmpDir } from '../helpers';

const m = loadStageConfig(path.join(ROOT, 'configs/train/tiny/3s.toml')).config.model;

/** configs/train/tiny's [model] sizes as the fields of a diffusers config.json. */
export const TINY: DiffusersConfig = {
  num_layers: m.num_layers,
  num_attention_heads: m.num_attention_heads,
  attention_head_dim: m.attention_head_dim,
  in_channels: m.in_channels,
  out_channels: m.out_channels,
  patch_size: m.patch_size,
  text_embed_dim: m.text_embed_dim,
  time_embed_dim: m.time_embed_dim,
};

/** One tensor of a diffusers state dict as torch held it when diffusers saved it (test/python/cogvideox_diffusers.py). */
export interface TorchTensor {
  dtype: 'bfloat16' | 'float16' | 'float32';
  shape: number[];
  /** sha256 of its raw bytes in its dtype (C order, little-endian). */
  sha256_raw: string;
  /** sha256 of its values cast to float32 (exact from every dtype here). */
  sha256_f32: string;
  /** The name TTT-Video-DiT's own converter (weight_conversion/from_hf.py) gives it; null: it drops the tensor. */
  ttt_name: string | null;
}

/** A CogVideoX transformer folder written by the real diffusers library, and what torch held. */
export interface DiffusersFixture {
  dir: string;
  torch: string;
  diffusers: string;
  /** The files save_pretrained wrote, sorted. */
  files: string[];
  /** The diffusers state dict, by diffusers name, in state-dict order. */
  tensors: Record<string, TorchTensor>;
}

export interface DiffusersFixtureOptions {
  dtype?: TorchTensor['dtype'];
  /** save_pretrained's max_shard_size; the default cuts the tiny BF16 model into 4 shards. */
  maxShardSize?: string;
  seed?: number;
}

const built = new Map<string, DiffusersFixture>();

/**
 * A CogVideoX transformer of configs/train/tiny's sizes, built and saved by diffusers'
 * CogVideoXTransformer3DModel.save_pretrained (safetensors, BF16 by default, in several shards),
 * copied into `dest`. Built once per set of options and test process (seconds: torch starts).
 */
export function diffusersFixture(dest: string, opts: DiffusersFixtureOptions = {}): DiffusersFixture {
  const o = { dtype: opts.dtype ?? 'bfloat16', maxShardSize: opts.maxShardSize ?? '40KB', seed: opts.seed ?? 7 };
  const key = JSON.stringify(o);
  let fx = built.get(key);
  if (!fx) {
    const dir = path.join(tmpDir('diffusers'), 'transformer');
    const dump = runPython<Omit<DiffusersFixture, 'dir'>>(
      'cogvideox_diffusers.py',
      [dir, JSON.stringify(TINY), String(o.seed), o.maxShardSize, o.dtype],
      pythonWithTorch(),
    );
    fx = { dir, ...dump };
    built.set(key, fx);
  }
  fs.cpSync(fx.dir, dest, { recursive: true });
  return { ...fx, dir: dest };
}

const sha256 = (b: Uint8Array): string => crypto.createHash('sha256').update(b).digest('hex');
const bytesOf = (a: Float32Array | Uint8Array): Uint8Array => new Uint8Array(a.buffer, a.byteOffset, a.byteLength);

/**
 * Checks converted weights against the diffusers state dict, tensor by tensor, by TTT-Video-DiT's
 * own names (not our key map's): each is there, with torch's shape and torch's values (`data`:
 * float32 values; `sha256`: the sha256 of float32 values; `raw`: bytes in the source's dtype).
 * Returns how many were checked.
 */
export function assertConvertedFromDiffusers(
  fx: DiffusersFixture,
  got: (name: string) => { shape: number[]; data?: Float32Array; raw?: Uint8Array; sha256?: string } | undefined,
  what: string,
): number {
  let n = 0;
  for (const [name, t] of Object.entries(fx.tensors)) {
    assert.ok(t.ttt_name, `${what}: TTT-Video-DiT's converter takes ${name}`);
    const g = got(t.ttt_name);
    assert.ok(g, `${what}: ${t.ttt_name} (from diffusers' ${name}) is in the output`);
    assert.deepEqual(g.shape, t.shape, `${what}: ${t.ttt_name} has torch's shape for ${name}`);
    if (g.raw) assert.equal(sha256(g.raw), t.sha256_raw, `${what}: ${t.ttt_name} has the bytes of ${name}`);
    else
      assert.equal(
        g.sha256 ?? sha256(bytesOf(g.data!)),
        t.sha256_f32,
        `${what}: ${t.ttt_name} has the values of ${name}`,
      );
    n++;
  }
  return n;
}
