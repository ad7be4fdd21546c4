/**
 * The validation loss: the mean v-prediction loss of the current weights on a fixed set of
 * (sample, timestep, noise) triples, so that two values of a stage differ only because the
 * weights did. A training step's loss is one draw at random timesteps and samples: too noisy to
 * say whether a stage learned.
 *
 *   samples    validation.samples ids spread evenly over the training data source (there is no
 *              separate split), the same at every measurement; an unreadable one is replaced by
 *              the next readable id
 *   timesteps  validation.timesteps, every sample at every one of them
 *   noise      its own stream (STREAM.validation), keyed by (seed, sample id, timestep)
 *
 * Forward only (no gradient tape), validation.batch_size pairs per pass inside tf.tidy; each
 * pair's loss is the mean over its own elements, so the value does not depend on the batch size.
 * It reads the weights and changes nothing: not the parameters, the optimizer, the training
 * batches or their random streams.
 */
import { tf } from '../backend';
import type { StageConfig } from '../config/schema';
import { type DataSource, openDataSource } from '../data/batch';
import { noiseAndTarget } from '../diffusion/objective';
import { UserError } from '../errors';
import type { ModelDims } from '../model/dims';
import { ditForward, type Params, type RopeTables } from '../model/dit';
import { normalSource, STREAM } from '../rng';

/** One measurement: the loss and how long it took. */
export interface ValidationResult {
  loss: number;
  seconds: number;
}

/** `n` sample ids spread evenly over a source of `size` samples (all of them when n >= size). */
export function spreadIds(size: number, n: number): number[] {
  const k = Math.min(n, size);
  return Array.from({ length: k }, (_, j) => Math.floor((j * size) / k));
}

/** Whether the validation loss is measured after `step` of a stage of `total` steps (0 = the start weights). */
export function validationDue(v: StageConfig['validation'], step: number, total: number): boolean {
  if (v.samples === 0) return false;
  return step === 0 || step === total || (v.interval > 0 && step % v.interval === 0);
}

export class Validation {
  private src: DataSource | undefined;
  private ids: number[] | undefined;
  /** The sample last read (pairs come sample by sample: each sample is read once per measurement). */
  private last: { id: number; s: { video: Float32Array; text: Float32Array } } | undefined;

  constructor(
    private readonly config: StageConfig,
    private readonly dims: ModelDims,
    private readonly rope: RopeTables,
  ) {}

  due(step: number, total: number): boolean {
    return validationDue(this.config.validation, step, total);
  }

  /** The sample ids measured (resolved on first use: unreadable samples are replaced). */
  sampleIds(): number[] {
    if (!this.ids) this.ids = this.resolveIds();
    return this.ids;
  }

  /** The validation loss of `params` (internal layout, as ModelState.params). */
  measure(params: Map<string, tf.Tensor>): ValidationResult {
    const t0 = process.hrtime.bigint();
    const P: Params = Object.fromEntries(params);
    const ids = this.sampleIds();
    const pairs = ids.flatMap((id) => this.config.validation.timesteps.map((t) => ({ id, t })));
    const chunk = this.config.validation.batch_size;
    let sum = 0;
    try {
      for (let i = 0; i < pairs.length; i += chunk) {
        for (const l of this.chunkLosses(P, pairs.slice(i, i + chunk))) sum += l;
      }
    } finally {
      this.last = undefined;
    }
    return { loss: sum / pairs.length, seconds: Number(process.hrtime.bigint() - t0) / 1e9 };
  }

  /** The loss of each (sample, timestep) pair of a chunk, each the mean over its own elements. */
  private chunkLosses(P: Params, pairs: { id: number; t: number }[]): Float32Array {
    const d = this.dims;
    const seed = this.config.training.seed;
    const vidLen = d.latentFrames * d.inChannels * d.latentHeight * d.latentWidth;
    const txtLen = d.segments * d.textLength * d.textDim;
    const b = pairs.length;
    const noisy = new Float32Array(b * vidLen);
    const target = new Float32Array(b * vidLen);
    const text = new Float32Array(b * txtLen);
    pairs.forEach(({ id, t }, k) => {
      if (this.last?.id !== id) this.last = { id, s: this.source().sample(id) };
      const s = this.last.s;
      const at = (a: Float32Array): Float32Array => a.subarray(k * vidLen, (k + 1) * vidLen);
      noiseAndTarget(s.video, normalSource(seed, STREAM.validation, id, t), t, at(noisy), at(target));
      text.set(s.text, k * txtLen);
    });
    const videoShape = [b, d.latentFrames, d.inChannels, d.latentHeight, d.latentWidth];
    const losses = tf.tidy(() => {
      const inputs = {
        video: tf.tensor(noisy, videoShape),
        text: tf.tensor(text, [b, d.segments, d.textLength, d.textDim]),
        timesteps: tf.tensor1d(pairs.map((p) => p.t)),
      };
      const pred = ditForward(P, d, inputs, this.rope);
      return pred.sub(tf.tensor(target, videoShape)).square().mean([1, 2, 3, 4]);
    });
    try {
      return losses.dataSync() as Float32Array;
    } finally {
      losses.dispose();
    }
  }

  private source(): DataSource {
    if (!this.src) this.src = openDataSource(this.config, this.dims);
    return this.src;
  }

  /** The evenly spread ids; one that cannot be read is replaced by the next readable id not taken yet. */
  private resolveIds(): number[] {
    const src = this.source();
    const out: number[] = [];
    const bad: string[] = [];
    for (const want of spreadIds(src.size, this.config.validation.samples)) {
      for (let k = 0; k < src.size; k++) {
        const id = (want + k) % src.size;
        if (out.includes(id)) continue;
        try {
          src.sample(id);
          out.push(id);
          break;
        } catch (e) {
          if (!(e instanceof UserError) || e.kind !== 'DataError') throw e;
          bad.push(e.message);
        }
      }
    }
    if (out.length === 0)
      throw new UserError(`no readable sample for the validation loss: ${bad.slice(0, 5).join('; ')}`, {
        kind: 'DataError',
        fix: 'repair the dataset, or set validation.samples = 0',
      });
    return out;
  }
}
