/**
 * Conversion benchmark: writes a synthetic CogVideoX checkpoint of several GB (CogVideoX-5B's
 * widths, fewer layers; BF16 shards plus an index) under the temporary folder, converts it in a
 * child process and reports the child's peak RSS against the target (1.5 x the largest input
 * shard + 300 MB) and the time per GB; then converts again (the idempotent path: hash the
 * input, keep the output). Deletes everything afterwards. The input was just written, so it is
 * read from the page cache: the figures are the converter's, not the disk's read speed.
 */
import { spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import type { ConvertResult } from '../src/convert/convert';
import { writeSyntheticDiffusers } from '../src/convert/synth';

export interface ConvertBenchResult {
  layers: number;
  inputBytes: number;
  largestShardBytes: number;
  shards: number;
  outputBytes: number;
  writeSeconds: number;
  convertSeconds: number;
  reuseSeconds: number;
  peakRss: number;
  rssBefore: number;
  targetRss: number;
}

function runChild(
  from: string,
  out: string,
  dtype: string,
): { result: ConvertResult; rssBefore: number; peakRss: number; wall: number } {
  const t0 = Date.now();
  const r = spawnSync(process.execPath, [path.join(__dirname, 'convert-child.js'), from, out, dtype], {
    encoding: 'utf8',
    env: { ...process.env, TTT_LOG_LEVEL: 'warn' },
    maxBuffer: 16 << 20,
  });
  if (r.status !== 0) throw new Error(`conversion child failed (${r.status}): ${r.stderr}`);
  return {
    ...(JSON.parse(r.stdout.trim().split('\n').pop()!) as {
      result: ConvertResult;
      rssBefore: number;
      peakRss: number;
    }),
    wall: (Date.now() - t0) / 1000,
  };
}

export function convertBench(opts: {
  layers: number;
  shards: number;
  dtype: 'float32' | 'bfloat16';
}): ConvertBenchResult {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'ttt-bench-convert-'));
  try {
    const from = path.join(dir, 'cogvideox');
    let t = Date.now();
    // CogVideoX-5B's sizes (48 heads of 64, T5 4096, time 512, 16 channels, patch 2) with `layers` blocks.
    const files = writeSyntheticDiffusers(
      from,
      {
        num_layers: opts.layers,
        num_attention_heads: 48,
        attention_head_dim: 64,
        in_channels: 16,
        out_channels: 16,
        patch_size: 2,
        text_embed_dim: 4096,
        time_embed_dim: 512,
      },
      { dtype: 'BF16', shards: opts.shards },
    );
    const writeSeconds = (Date.now() - t) / 1000;
    const sizes = files.map((f) => fs.statSync(f).size);
    const out = path.join(dir, 'converted');
    const first = runChild(from, out, opts.dtype);
    t = Date.now();
    const second = runChild(from, out, opts.dtype);
    if (!second.result.reused) throw new Error('the second conversion did not reuse the first');
    const largest = Math.max(...sizes);
    return {
      layers: opts.layers,
      inputBytes: first.result.bytesIn,
      largestShardBytes: largest,
      shards: files.length,
      outputBytes: first.result.bytesOut,
      writeSeconds,
      convertSeconds: first.result.seconds,
      reuseSeconds: second.result.seconds,
      peakRss: first.peakRss,
      rssBefore: first.rssBefore,
      targetRss: 1.5 * largest + 300e6,
    };
  } finally {
    fs.rmSync(dir, { recursive: true, force: true });
  }
}
