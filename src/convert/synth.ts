/**
 * Writes a synthetic CogVideoX transformer in diffusers format: a config.json like
 * CogVideoX-5B's, key names and shapes for the given sizes, pseudo-random finite values, one
 * file or shards plus an index. Streams to disk, so it can write checkpoints of many GB (the
 * conversion benchmark) as well as tiny fixtures.
 *
 * Its names and shapes come from our own key map and parameter specs, so it proves nothing
 * about the real diffusers layout: tests of that use a folder saved by the diffusers library
 * (test/unit/fixtures.ts: diffusersFixture). This one stays for the benchmark (GB sizes, no
 * torch), for malformed inputs (its `tensors` hook) and for tests of the converter's own
 * behaviour (reuse, cancellation, the CLI, stage-init decisions).
 */
import * as fs from 'node:fs';
import * as path from 'node:path';
import { DTYPE_BYTES, encodeHeader, type DType, type HeaderEntry } from '../io/safetensors';
import { paramSpecs } from '../model/params';
import { DIFFUSERS_CONFIG, DIFFUSERS_INDEX, DIFFUSERS_SINGLE, paramDims, type DiffusersConfig } from './diffusers';
import { splitSpecs } from './keymap';

/** CogVideoX-5B's transformer config.json with the given sizes. */
export function cogvideoxConfig(c: DiffusersConfig): Record<string, unknown> {
  return {
    _class_name: 'CogVideoXTransformer3DModel',
    _diffusers_version: '0.31.0',
    activation_fn: 'gelu-approximate',
    attention_bias: true,
    dropout: 0.0,
    flip_sin_to_cos: true,
    freq_shift: 0,
    max_text_seq_length: 226,
    norm_elementwise_affine: true,
    norm_eps: 1e-5,
    patch_size_t: null,
    sample_frames: 49,
    sample_height: 60,
    sample_width: 90,
    spatial_interpolation_scale: 1.875,
    temporal_compression_ratio: 4,
    temporal_interpolation_scale: 1.0,
    timestep_activation_fn: 'silu',
    use_learned_positional_embeddings: false,
    use_rotary_positional_embeddings: true,
    ...c,
  };
}

/** The diffusers tensors of a CogVideoX transformer of these sizes, in state-dict order. */
export function diffusersTensors(c: DiffusersConfig): { name: string; shape: number[] }[] {
  return splitSpecs(paramSpecs(paramDims(c, 'ttt_mlp'))).mapped.map((m) => ({
    name: m.source,
    shape: m.spec.torchShape,
  }));
}

export interface SynthOptions {
  dtype?: 'BF16' | 'F16' | 'F32';
  /** 1: diffusion_pytorch_model.safetensors; more: shards and an index. */
  shards?: number;
  seed?: number;
  /** Changes the tensor list before writing (tests make malformed inputs with it). */
  tensors?: (list: { name: string; shape: number[] }[]) => { name: string; shape: number[] }[];
}

/** Fills `out` (8-byte aligned) with finite values of magnitude 2^-9..2 in the dtype's bits (xorshift32; little-endian hosts). */
function fillRandom(out: Buffer, dtype: DType, state: { s: number }): void {
  let s = state.s;
  if (dtype === 'F32') {
    const u = new Uint32Array(out.buffer, out.byteOffset, out.length >>> 2);
    for (let i = 0; i < u.length; i++) {
      s ^= s << 13;
      s ^= s >>> 17;
      s ^= s << 5;
      const r = s >>> 0;
      u[i] = ((r & 0x80000000) | ((118 + (r % 10)) << 23) | ((r * 2654435761) & 0x7fffff)) >>> 0;
    }
  } else {
    const bf = dtype === 'BF16';
    const u = new Uint16Array(out.buffer, out.byteOffset, out.length >>> 1);
    for (let i = 0; i < u.length; i++) {
      s ^= s << 13;
      s ^= s >>> 17;
      s ^= s << 5;
      const r = s >>> 0;
      const sign = (r >>> 31) << 15;
      u[i] = bf
        ? sign | ((118 + (r % 10)) << 7) | ((r >>> 8) & 0x7f)
        : sign | ((6 + (r % 10)) << 10) | ((r >>> 8) & 0x3ff);
    }
  }
  state.s = s;
}

/** Writes the folder; returns the safetensors files written. */
export function writeSyntheticDiffusers(dir: string, config: DiffusersConfig, opts: SynthOptions = {}): string[] {
  const dtype = opts.dtype ?? 'BF16';
  const shardCount = opts.shards ?? 1;
  const list = (opts.tensors ?? ((l) => l))(diffusersTensors(config));
  const entries: (HeaderEntry & { bytes: number })[] = list.map((t) => ({
    ...t,
    dtype,
    bytes: t.shape.reduce((a, b) => a * b, DTYPE_BYTES[dtype]),
  }));
  const total = entries.reduce((a, e) => a + e.bytes, 0);
  const buckets: (typeof entries)[] = [];
  let acc = 0;
  for (const e of entries) {
    const g = Math.min(shardCount - 1, Math.floor((acc * shardCount) / Math.max(1, total)));
    (buckets[g] ??= []).push(e);
    acc += e.bytes;
  }
  const groups = buckets.filter((g) => g !== undefined);
  fs.mkdirSync(dir, { recursive: true });
  fs.writeFileSync(path.join(dir, DIFFUSERS_CONFIG), `${JSON.stringify(cogvideoxConfig(config), null, 2)}\n`);
  const names =
    shardCount === 1
      ? [DIFFUSERS_SINGLE]
      : groups.map(
          (_, i) =>
            `diffusion_pytorch_model-${String(i + 1).padStart(5, '0')}-of-${String(groups.length).padStart(5, '0')}.safetensors`,
        );
  const state = { s: ((opts.seed ?? 1) * 2654435761) >>> 0 || 1 };
  const chunk = Buffer.allocUnsafeSlow(16 << 20);
  const weightMap: Record<string, string> = {};
  groups.forEach((g, i) => {
    const file = path.join(dir, names[i]!);
    const fd = fs.openSync(file, 'w');
    try {
      fs.writeSync(fd, encodeHeader(g, { format: 'pt' }).header);
      for (const e of g) {
        weightMap[e.name] = names[i]!;
        for (let left = e.bytes; left > 0; ) {
          const n = Math.min(left, chunk.length);
          const part = chunk.subarray(0, n);
          fillRandom(part, dtype, state);
          for (let off = 0; off < n; ) off += fs.writeSync(fd, part, off, n - off);
          left -= n;
        }
      }
    } finally {
      fs.closeSync(fd);
    }
  });
  if (shardCount > 1)
    fs.writeFileSync(
      path.join(dir, DIFFUSERS_INDEX),
      `${JSON.stringify({ metadata: { total_size: total }, weight_map: weightMap }, null, 2)}\n`,
    );
  return names.map((n) => path.join(dir, n));
}
