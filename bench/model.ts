/**
 * Model benchmarks (issue 2/6): time per video token across stage lengths, achieved training
 * FLOP/s against the backend's large-matmul FLOP/s, remat memory/time at 63 s, step time per
 * backend. All at the tiny width (2 layers, 2 heads of 16) unless stated.
 */
import * as path from 'node:path';
import { initBackend, tf } from '../src/backend';
import { loadStageConfig } from '../src/config/load';
import { peakBytes } from '../src/memory';
import { modelDims, type ModelDims } from '../src/model/dims';
import { disposeRopeTables, ditForward, ropeForModel, type Params } from '../src/model/dit';
import { matMulStats } from '../src/model/matmul';
import { initialParams } from '../src/model/params';
import { NO_REMAT, type RematConfig } from '../src/model/remat';

const ROOT = path.resolve(__dirname, '..', '..');

interface StepTiming {
  seconds: number;
  flops: number;
  peakBytes: number;
  videoTokens: number;
}

/** Median time of `reps` training steps (forward + backward over every parameter) after one warm-up. */
export async function stepTiming(stage: string, overrides: Record<string, unknown>, remat: RematConfig, reps: number): Promise<StepTiming> {
  const st = loadStageConfig(path.join(ROOT, `configs/train/tiny/${stage}.toml`), overrides);
  const d: ModelDims = { ...modelDims(st.config), remat };
  const P: Params = initialParams(d, 0);
  const rope = ropeForModel(d);
  const video = tf.randomNormal([1, d.latentFrames, d.inChannels, d.latentHeight, d.latentWidth]);
  const text = tf.randomNormal([1, d.segments, d.textLength, d.textDim]);
  const ts = tf.tensor1d([500]);
  const names = Object.keys(P);
  const step = (): void =>
    tf.tidy(() => {
      const { value, grads } = tf.valueAndGrads((...xs: tf.Tensor[]) => {
        const Q: Params = {};
        names.forEach((n, i) => (Q[n] = xs[i]!));
        return ditForward(Q, d, { video, text, timesteps: ts }, rope).square().mean() as tf.Scalar;
      })(names.map((n) => P[n]!));
      value.dataSync();
      grads.forEach((g) => g.dataSync());
    });
  step();
  const times: number[] = [];
  let flops = 0;
  let peak = 0;
  for (let r = 0; r < reps; r++) {
    const f0 = matMulStats.flops;
    const t = process.hrtime.bigint();
    const m = await peakBytes(step);
    times.push(Number(process.hrtime.bigint() - t) / 1e9);
    // Forward products as counted; the backward pass computes two products of the same size per
    // product. (Exact without remat, which re-runs forward products; (b) uses a run without it.)
    flops = (matMulStats.flops - f0) * 3;
    peak = m.peakBytes;
  }
  tf.dispose([video, text, ts, ...Object.values(P)]);
  disposeRopeTables(rope);
  times.sort((a, b) => a - b);
  return { seconds: times[Math.floor(times.length / 2)]!, flops, peakBytes: peak, videoTokens: d.latentFrames * d.tokensPerFrame };
}

/** FLOP/s of one large untransposed 2-D product on the current backend. */
export function largeMatmulFlops(n: number): number {
  const a = tf.randomNormal([n, n]) as tf.Tensor2D;
  tf.matMul(a, a).dispose();
  const reps = 5;
  const t = process.hrtime.bigint();
  for (let i = 0; i < reps; i++) {
    // (Not tf.tidy(() => ...dataSync()): tidy walks a returned typed array element by element.)
    const r = tf.matMul(a, a);
    r.dataSync();
    r.dispose();
  }
  const s = Number(process.hrtime.bigint() - t) / 1e9;
  a.dispose();
  return (2 * n * n * n * reps) / s;
}

export async function modelBench(out: NodeJS.WritableStream): Promise<void> {
  const w = (s: string): boolean => out.write(s);
  const backend = await initBackend('auto');
  // (a) time per video token, 3 s .. 63 s, width 64 (2 heads of 32) so the step is not all per-op overhead.
  const width = { 'model.num_attention_heads': 2, 'model.attention_head_dim': 32 };
  w(`(a) Training step (forward + backward) per video token, tiny stages at width 64, backend ${backend}\n`);
  w('| stage | video tokens | step (s) | µs per video token | vs 3s |\n|---|---|---|---|---|\n');
  let base = 0;
  const perStage: Record<string, StepTiming> = {};
  for (const stage of ['3s', '9s', '18s', '30s', '63s']) {
    const r = await stepTiming(stage, width, NO_REMAT, 3);
    perStage[stage] = r;
    const per = (r.seconds / r.videoTokens) * 1e6;
    if (stage === '3s') base = per;
    w(`| ${stage} | ${r.videoTokens} | ${r.seconds.toFixed(3)} | ${per.toFixed(1)} | ${(per / base).toFixed(2)} |\n`);
  }
  w('target: 63s <= 1.3 x 3s\n\n');
  // (b) achieved FLOP/s vs the large-matmul FLOP/s.
  const peak = largeMatmulFlops(1024);
  const r63 = perStage['63s']!;
  const achieved = r63.flops / r63.seconds;
  w(`(b) Achieved training FLOP/s (63s stage, width 64): ${(achieved / 1e9).toFixed(2)} GFLOP/s (matmul FLOPs ${(r63.flops / 1e9).toFixed(2)} G per step); 1024^3 matmul: ${(peak / 1e9).toFixed(2)} GFLOP/s; ratio ${(achieved / peak).toFixed(3)} (target >= 0.5)\n\n`);
  // (c) remat at 63 s.
  const remat: RematConfig = { layerGroup: 1, attention: false, mlp: false, forwardSsm: false, reverseSsm: false, seqBlock: false };
  const withRemat = await stepTiming('63s', width, remat, 3);
  w(`(c) Remat at 63s (width 64, remat.transformer_checkpoint_layer_group_size = 1)\n`);
  w('| | peak tensor memory (MB) | step (s) |\n|---|---|---|\n');
  w(`| no remat | ${(r63.peakBytes / 1e6).toFixed(1)} | ${r63.seconds.toFixed(3)} |\n`);
  w(`| remat | ${(withRemat.peakBytes / 1e6).toFixed(1)} | ${withRemat.seconds.toFixed(3)} |\n`);
  w(`ratio: memory ${(withRemat.peakBytes / r63.peakBytes).toFixed(2)}x (target <= 0.6), time ${(withRemat.seconds / r63.seconds).toFixed(2)}x (target <= 1.4)\n\n`);
  // (d) step time per available backend, tiny width.
  w('(d) Step time per backend (tiny width 32, median of 3)\n| backend | 3s step (s) | 63s step (s) |\n|---|---|---|\n');
  for (const b of ['tensorflow', 'wasm', 'cpu'] as const) {
    let name: string;
    try {
      name = await initBackend(b);
    } catch (e) {
      w(`| ${b} | unavailable (${(e as Error).message.split(':')[0]}) | |\n`);
      continue;
    }
    const s3 = await stepTiming('3s', {}, NO_REMAT, 3);
    const s63 = await stepTiming('63s', {}, NO_REMAT, b === 'cpu' ? 1 : 3);
    w(`| ${name} | ${s3.seconds.toFixed(3)} | ${s63.seconds.toFixed(3)} |\n`);
  }
  await initBackend(backend as 'wasm');
  w('\n');
}
