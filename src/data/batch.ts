/**
 * Training batches: the samples of a step's micro-batch (source.ts), noised at their timesteps
 * (diffusion/objective.ts). Everything is a pure function of (seed, step, slot), so a resumed run
 * sees exactly the batches of an uninterrupted one.
 */
import { tf } from '../backend';
import type { StageConfig } from '../config/schema';
import { noiseAndTarget, sampleTimestep } from '../diffusion/objective';
import type { ModelDims } from '../model/dims';
import { normalSource, STREAM } from '../rng';
import { openJsonlDataset } from './jsonl';
import { type DataSource, readSample, type SkipPolicy } from './source';
import { synthSample, type SynthDims } from './synthetic';

export type { DataSource, SkipPolicy };

export interface Batch {
  /** Noisy latents x_t [b, F, C, H, W]. */
  noisy: tf.Tensor;
  /** v-prediction target [b, F, C, H, W]. */
  target: tf.Tensor;
  text: tf.Tensor;
  timesteps: tf.Tensor;
  sampleIds: number[];
}

/** A batch as plain arrays (built off the training thread by prefetch.ts), before it becomes tensors. */
export interface HostBatch {
  noisy: Float32Array;
  target: Float32Array;
  text: Float32Array;
  timesteps: Float32Array;
  videoShape: number[];
  textShape: number[];
  sampleIds: number[];
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

/** hostBatch's micro-batch as tensors, on this thread. */
export function makeBatch(...args: Parameters<typeof hostBatch>): Batch {
  return batchTensors(hostBatch(...args));
}

/**
 * The arrays of micro-batch `micro` of optimizer step `step` (1-based): `size` samples starting at
 * stream position (step-1)*globalBatch + micro*size, read, decoded and noised (no tensors: runs on
 * any thread).
 */
export function hostBatch(
  src: DataSource,
  d: ModelDims,
  seed: number,
  step: number,
  globalBatch: number,
  micro: number,
  size: number,
  cache?: Map<number, number[]>,
  skip?: SkipPolicy,
): HostBatch {
  const F = d.latentFrames;
  const vidLen = F * d.inChannels * d.latentHeight * d.latentWidth;
  const txtLen = d.segments * d.textLength * d.textDim;
  const ts = new Float32Array(size);
  const ids: number[] = [];
  let noisy: Float32Array | undefined;
  let target: Float32Array | undefined;
  let text: Float32Array | undefined;
  for (let b = 0; b < size; b++) {
    const slot = micro * size + b;
    const pos = (step - 1) * globalBatch + slot;
    const { id, s } = readSample(src, pos, seed, cache, skip);
    ids.push(id);
    const t = sampleTimestep(seed, step, slot);
    ts[b] = t;
    // A micro-batch of one sample (a 63 s sample is 157 MB) is built in the sample's own arrays,
    // which the source hands over (DataSource.sample): x_t over the latent, the text as it is.
    const own = size === 1 && ownsBuffer(s.video) && ownsBuffer(s.text);
    noisy ??= own ? s.video : new Float32Array(size * vidLen);
    target ??= new Float32Array(size * vidLen);
    text ??= own ? s.text : new Float32Array(size * txtLen);
    noiseAndTarget(
      s.video,
      normalSource(seed, STREAM.noise, step, slot),
      t,
      noisy.subarray(b * vidLen, (b + 1) * vidLen),
      target.subarray(b * vidLen, (b + 1) * vidLen),
    );
    if (text !== s.text) text.set(s.text, b * txtLen);
  }
  if (!noisy || !target || !text) throw new Error(`hostBatch: a micro-batch of ${size} samples`);
  return {
    noisy,
    target,
    text,
    timesteps: ts,
    videoShape: [size, F, d.inChannels, d.latentHeight, d.latentWidth],
    textShape: [size, d.segments, d.textLength, d.textDim],
    sampleIds: ids,
  };
}

/** Whether a typed array spans its whole buffer (so that it can be transferred on its own). */
function ownsBuffer(a: Float32Array): boolean {
  return a.byteOffset === 0 && a.byteLength === a.buffer.byteLength;
}

/** A host batch as tensors (on the training thread). */
export function batchTensors(h: HostBatch): Batch {
  return {
    noisy: tf.tensor(h.noisy, h.videoShape),
    target: tf.tensor(h.target, h.videoShape),
    text: tf.tensor(h.text, h.textShape),
    timesteps: tf.tensor1d(h.timesteps),
    sampleIds: h.sampleIds,
  };
}

export function disposeBatch(b: Batch): void {
  b.noisy.dispose();
  b.target.dispose();
  b.text.dispose();
  b.timesteps.dispose();
}
