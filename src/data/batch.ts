/**
 * Training batches: which samples a step uses, their noise and timesteps. Everything is a pure
 * function of (seed, step, slot), so a resumed run sees exactly the batches of an uninterrupted one.
 */
import { tf } from '../backend';
import type { StageConfig } from '../config/schema';
import { ALPHAS_CUMPROD, NUM_TRAIN_TIMESTEPS } from '../diffusion';
import type { ModelDims } from '../model/dims';
import { normals, permutation, rngFor, STREAM } from '../rng';
import { UserError } from '../errors';
import { openJsonlDataset } from './jsonl';
import { synthSample, type SynthDims } from './synthetic';

export interface Batch {
  /** Noisy latents x_t [b, F, C, H, W]. */
  noisy: tf.Tensor;
  /** v-prediction target [b, F, C, H, W]. */
  target: tf.Tensor;
  text: tf.Tensor;
  timesteps: tf.Tensor;
  sampleIds: number[];
}

/** Bad samples: skipped with a warning up to `maxBad`, then the run fails with the list. */
export interface SkipPolicy {
  maxBad: number;
  /** Sample id -> why it is unusable ("file:line: ..."). */
  bad: Map<number, string>;
  onSkip?: (id: number, reason: string) => void;
}

export interface DataSource {
  size: number;
  sample(n: number): { video: Float32Array; text: Float32Array };
}

export function synthDims(d: ModelDims): SynthDims {
  return {
    latentFrames: d.latentFrames,
    segments: d.segments,
    channels: d.inChannels,
    height: d.latentHeight,
    width: d.latentWidth,
    textLength: d.textLength,
    textDim: d.textDim,
  };
}

export function openDataSource(c: StageConfig, d: ModelDims): DataSource {
  if (c.training.dataset_path !== 'synthetic') return openJsonlDataset(c, d);
  const dims = synthDims(d);
  const seed = c.training.seed;
  return { size: c.training.synthetic_samples, sample: (n) => synthSample(seed, n, dims) };
}

/** Sample id at global position `pos` of the stream: a seeded permutation per epoch. */
export function sampleAt(pos: number, size: number, seed: number, cache: Map<number, number[]> = new Map()): number {
  const epoch = Math.floor(pos / size);
  let perm = cache.get(epoch);
  if (!perm) {
    perm = permutation(size, seed, STREAM.order, epoch);
    cache.clear();
    cache.set(epoch, perm);
  }
  return perm[pos % size]!;
}

/**
 * The micro-batch `micro` of optimizer step `step` (1-based): `size` samples starting at
 * stream position (step-1)*globalBatch + micro*size.
 */
export function makeBatch(
  src: DataSource,
  d: ModelDims,
  seed: number,
  step: number,
  globalBatch: number,
  micro: number,
  size: number,
  cache?: Map<number, number[]>,
  skip?: SkipPolicy,
): Batch {
  const F = d.latentFrames;
  const vidLen = F * d.inChannels * d.latentHeight * d.latentWidth;
  const txtLen = d.segments * d.textLength * d.textDim;
  const noisy = new Float32Array(size * vidLen);
  const target = new Float32Array(size * vidLen);
  const text = new Float32Array(size * txtLen);
  const ts = new Float32Array(size);
  const ids: number[] = [];
  for (let b = 0; b < size; b++) {
    const slot = micro * size + b;
    const pos = (step - 1) * globalBatch + slot;
    const { id, s } = readSample(src, pos, seed, cache, skip);
    ids.push(id);
    const t = Math.floor(rngFor(seed, STREAM.timestep, step, slot)() * NUM_TRAIN_TIMESTEPS);
    ts[b] = t;
    const a = Math.fround(Math.sqrt(ALPHAS_CUMPROD[t]!));
    const sig = Math.fround(Math.sqrt(1 - a * a));
    const eps = normals(vidLen, seed, STREAM.noise, step, slot);
    for (let i = 0; i < vidLen; i++) {
      const x0 = s.video[i]!;
      noisy[b * vidLen + i] = a * x0 + sig * eps[i]!;
      target[b * vidLen + i] = a * eps[i]! - sig * x0;
    }
    text.set(s.text, b * txtLen);
  }
  const shape = [size, F, d.inChannels, d.latentHeight, d.latentWidth];
  return {
    noisy: tf.tensor(noisy, shape),
    target: tf.tensor(target, shape),
    text: tf.tensor(text, [size, d.segments, d.textLength, d.textDim]),
    timesteps: tf.tensor1d(ts),
    sampleIds: ids,
  };
}

/**
 * The sample at stream position `pos`; a bad one is replaced by the sample at the same position
 * of the next epoch's order (deterministic, so resumed runs skip identically).
 */
function readSample(
  src: DataSource,
  pos: number,
  seed: number,
  cache: Map<number, number[]> | undefined,
  skip: SkipPolicy | undefined,
): { id: number; s: { video: Float32Array; text: Float32Array } } {
  for (let attempt = 0; ; attempt++) {
    const id = sampleAt(pos + attempt * src.size, src.size, seed, cache);
    try {
      return { id, s: src.sample(id) };
    } catch (e) {
      if (!skip || !(e instanceof UserError) || e.kind !== 'DataError') throw e;
      if (!skip.bad.has(id)) {
        skip.bad.set(id, e.message);
        skip.onSkip?.(id, e.message);
      }
      if (skip.bad.size > skip.maxBad || skip.bad.size >= src.size) {
        const list = [...skip.bad.values()].map((r) => `  - ${r}`).join('\n');
        throw new UserError(
          `${skip.bad.size} bad samples, more than training.max_bad_samples = ${skip.maxBad}:\n${list}\n`,
          {
            kind: 'DataError',
            fix: 'repair or remove these samples, or raise training.max_bad_samples',
          },
        );
      }
    }
  }
}

export function disposeBatch(b: Batch): void {
  b.noisy.dispose();
  b.target.dispose();
  b.text.dispose();
  b.timesteps.dispose();
}
