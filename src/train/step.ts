/**
 * One optimizer step: the gradients of the v-prediction loss averaged over the step's
 * micro-batches, clipped to a global norm, then AdamW with the two learning rates (TTT
 * parameters and the rest) of the schedule. A step whose loss or gradient norm is not finite
 * is never applied: the caller rolls back (see ShardRun.rollBack).
 */
import { tf } from '../backend';
import type { StageConfig } from '../config/schema';
import { type Batch, disposeBatch } from '../data/batch';
import { vPredictionLoss } from '../diffusion/objective';
import type { ModelDims } from '../model/dims';
import { ditForward, type Params, ROPE_KEYS, type RopeTables } from '../model/dit';
import { graphFunction } from '../graph';
import { replayCount } from '../model/matmul';
import { NO_REMAT, type RematConfig } from '../model/remat';
import { clipGlobalNorm } from '../optim/adamw';
import { learningRate } from '../optim/schedule';
import type { ModelState } from './model-state';

/** What a step computed, before it is applied. */
export interface StepGradients {
  /** Mean loss over the micro-batches. */
  loss: number;
  /** Global gradient norm before clipping. */
  gradNorm: number;
  /** Clipped gradients of the trainable parameters (owned by the caller until applied or disposed). */
  grads: Map<string, tf.Tensor>;
  /** Sample ids the step trained on. */
  samples: number[];
  /** Seconds spent waiting for batches (building them, when the prefetch thread is behind). */
  dataSeconds: number;
}

export interface StepModel {
  model: ModelState;
  /** The frozen parameters (ModelState.frozenParams), rebuilt after a rollback. */
  frozen: Params;
  dims: ModelDims;
  rope: RopeTables;
}

/**
 * Gradients of one optimizer step over `accum` micro-batches; `batch(a)` gives micro-batch a
 * (from the prefetch thread, so it may have to wait for it). The loss and gradients are the mean
 * over the micro-batches.
 */
export async function stepGradients(
  m: StepModel,
  accum: number,
  clipNorm: number,
  batch: (micro: number) => Promise<Batch>,
): Promise<StepGradients> {
  const names = m.model.trainable;
  let loss = 0;
  let dataMs = 0;
  const samples: number[] = [];
  const grads = new Map<string, tf.Tensor>();
  for (let a = 0; a < accum; a++) {
    const td = Date.now();
    const b = await batch(a);
    samples.push(...b.sampleIds);
    dataMs += Date.now() - td;
    const { value, grads: gs } = lossAndGradients(
      { frozen: m.frozen, dims: m.dims, rope: m.rope },
      names,
      names.map((n) => m.model.params.get(n)!),
      { video: b.noisy, text: b.text, timesteps: b.timesteps, target: b.target },
    );
    loss += value.dataSync()[0]! / accum;
    value.dispose();
    names.forEach((n, i) => accumulate(grads, n, gs[i]!, accum));
    disposeBatch(b);
  }
  const gradNorm = clipGlobalNorm(grads, clipNorm);
  return { loss, gradNorm, grads, samples, dataSeconds: dataMs / 1000 };
}

/** One micro-batch: the noisy latents, the text, the timesteps and the v-prediction target. */
export interface LossInputs {
  video: tf.Tensor;
  text: tf.Tensor;
  timesteps: tf.Tensor;
  target: tf.Tensor;
}

/** The loss-and-gradients function of one model layout (dims, trainable and frozen names). */
const lossGraphs = new Map<string, (xs: tf.Tensor[]) => tf.Tensor[]>();

/**
 * The v-prediction loss of one micro-batch and its gradients for the trainable parameters
 * `names` (values `params`). Where graph replay applies (src/graph.ts: the tensorflow backend's
 * CPU) and no remat is configured, forward and backward run as one libtensorflow graph. (With
 * remat, a graph could undo it: TensorFlow's graph optimizer merges a recomputation with the
 * computation it repeats. Those runs stay eager, with the TTT scan's own graphs.)
 */
export function lossAndGradients(
  m: { frozen: Params; dims: ModelDims; rope: RopeTables },
  names: string[],
  params: tf.Tensor[],
  inp: LossInputs,
): { value: tf.Scalar; grads: tf.Tensor[] } {
  const frozenNames = Object.keys(m.frozen);
  const key = JSON.stringify([m.dims, names, frozenNames]);
  let f = lossGraphs.get(key);
  if (!f) {
    const dims = m.dims;
    const run = (xs: tf.Tensor[]): tf.Tensor[] => {
      const at = (i: number, n: number): tf.Tensor[] => xs.slice(i, i + n);
      const frozen = at(names.length, frozenNames.length);
      const P: Params = Object.fromEntries(frozenNames.map((n, i) => [n, frozen[i]!]));
      const r = at(names.length + frozenNames.length, ROPE_KEYS.length);
      const rope = Object.fromEntries(ROPE_KEYS.map((k, i) => [k, r[i]!])) as unknown as RopeTables;
      const [video, text, timesteps, target] = xs.slice(-4) as [tf.Tensor, tf.Tensor, tf.Tensor, tf.Tensor];
      const { value, grads } = tf.valueAndGrads((...ps: tf.Tensor[]): tf.Scalar => {
        const Q: Params = { ...P };
        names.forEach((n, i) => (Q[n] = ps[i]!));
        return vPredictionLoss(ditForward(Q, dims, { video, text, timesteps }, rope), target);
      })(at(0, names.length));
      return [value, ...grads];
    };
    const rematOff = (Object.keys(NO_REMAT) as (keyof RematConfig)[]).every((k) => dims.remat[k] === NO_REMAT[k]);
    f = rematOff ? graphFunction('training step', run, replayCount) : run;
    lossGraphs.set(key, f);
  }
  const [value, ...grads] = f([
    ...params,
    ...frozenNames.map((n) => m.frozen[n]!),
    ...ROPE_KEYS.map((k) => m.rope[k]),
    inp.video,
    inp.text,
    inp.timesteps,
    inp.target,
  ]);
  return { value: value as tf.Scalar, grads };
}

/** Adds g / accum into sums[name], disposing what it replaces. */
function accumulate(sums: Map<string, tf.Tensor>, name: string, g: tf.Tensor, accum: number): void {
  const scaled = accum === 1 ? g : tf.tidy(() => g.mul(1 / accum));
  if (scaled !== g) g.dispose();
  const prev = sums.get(name);
  if (prev) {
    sums.set(name, prev.add(scaled));
    prev.dispose();
    scaled.dispose();
  } else sums.set(name, scaled);
}

export function isFiniteStep(g: StepGradients): boolean {
  return Number.isFinite(g.loss) && Number.isFinite(g.gradNorm);
}

export function disposeGradients(g: StepGradients): void {
  for (const t of g.grads.values()) t.dispose();
}

/** The learning rates of optimizer step `step` (1-based) of `total`: the rest (`lr`) and the TTT parameters (`lr_ssm`). */
export function learningRates(step: number, total: number, o: StageConfig['optimizer']): { base: number; ttt: number } {
  return {
    base: learningRate(step, { peak: o.lr, end: o.lr_end, warmup: o.warmup_steps, total, decay: o.lr_schedule }),
    ttt: learningRate(step, { peak: o.lr_ssm, end: o.lr_end, warmup: o.warmup_steps, total, decay: o.lr_ssm_schedule }),
  };
}

/** AdamW on the trainable parameters with the step's gradients (then disposed). */
export function applyStep(model: ModelState, g: StepGradients, lr: { base: number; ttt: number }): void {
  model.optimizer.apply(model.params, g.grads, lr);
  disposeGradients(g);
}
