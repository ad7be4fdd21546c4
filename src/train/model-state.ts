/**
 * The model a shard trains: parameters in the internal layout, the AdamW state of the trainable
 * ones, and conversion to and from checkpoint tensors (PyTorch names and shapes).
 */
import type { tf } from '../backend';
import type { LoadedStage } from '../config/load';
import { UserError } from '../errors';
import type { FloatTensor } from '../io/safetensors';
import type { ModelDims } from '../model/dims';
import type { Params } from '../model/dit';
import {
  hasWeightDecay,
  initialValue,
  isTrainable,
  isTttParam,
  type ParamSpec,
  paramSpecs,
  toInternal,
  toTorch,
} from '../model/params';
import { AdamW } from '../optim/adamw';

/** Checks a weights map against the parameter specs; lists every missing, unexpected or mis-shaped tensor. */
export function checkWeights(specs: ParamSpec[], weights: Map<string, FloatTensor>, where: string): void {
  const expected = new Map(specs.map((s) => [s.name, s.torchShape]));
  const missing = [...expected.keys()].filter((k) => !weights.has(k));
  const unexpected = [...weights.keys()].filter((k) => !expected.has(k));
  const misshaped = [...weights.entries()]
    .filter(([k, t]) => expected.has(k) && JSON.stringify(t.shape) !== JSON.stringify(expected.get(k)))
    .map(([k, t]) => `${k} is [${t.shape.join(',')}], expected [${expected.get(k)!.join(',')}]`);
  if (missing.length + unexpected.length + misshaped.length > 0) {
    const list = (title: string, xs: string[]): string =>
      xs.length ? `${title} (${xs.length}): ${xs.slice(0, 20).join(', ')}${xs.length > 20 ? ', ...' : ''}` : '';
    throw new UserError(
      [
        'weights do not match the model config',
        list('missing', missing),
        list('unexpected', unexpected),
        list('wrong shape', misshaped),
      ]
        .filter(Boolean)
        .join('; '),
      {
        where,
        kind: 'CheckpointError',
        fix: 'use weights converted for this model size (model.* dimensions and model.ssm_layer must match)',
      },
    );
  }
}

/** Model state of a trainer: parameters (internal layout) and the optimizer. */
export class ModelState {
  readonly params = new Map<string, tf.Tensor>();
  readonly specs: ParamSpec[];
  readonly bySpec: Map<string, ParamSpec>;
  readonly trainable: string[];
  optimizer: AdamW;

  constructor(
    readonly stage: LoadedStage,
    readonly dims: ModelDims,
  ) {
    this.specs = paramSpecs(dims);
    this.bySpec = new Map(this.specs.map((s) => [s.name, s]));
    const adapter = stage.config.model.adapter_method;
    this.trainable = this.specs.filter((s) => isTrainable(s.name, adapter)).map((s) => s.name);
    const o = stage.config.optimizer;
    this.optimizer = new AdamW(
      new Map(this.trainable.map((n) => [n, { group: isTttParam(n) ? 'ttt' : 'base', decay: hasWeightDecay(n) }])),
      {
        beta1: o.beta1,
        beta2: o.beta2,
        eps: o.eps,
        weightDecay: o.weight_decay,
      },
    );
  }

  loadWeights(weights: Map<string, FloatTensor>, where: string): void {
    checkWeights(this.specs, weights, where);
    for (const s of this.specs) {
      this.params.get(s.name)?.dispose();
      this.params.set(s.name, toInternal(s, weights.get(s.name)!.data));
    }
  }

  freshWeights(seed: number): Map<string, FloatTensor> {
    return new Map(this.specs.map((s) => [s.name, { shape: s.torchShape, data: initialValue(s, seed) }]));
  }

  loadOptimizer(opt: Map<string, FloatTensor>, step: number): void {
    for (const n of this.trainable) {
      const s = this.bySpec.get(n)!;
      const m = opt.get(`${n}.exp_avg`);
      const v = opt.get(`${n}.exp_avg_sq`);
      if (!m || !v) throw new Error(`optimizer state lacks ${n}`);
      this.optimizer.m.get(n)?.dispose();
      this.optimizer.v.get(n)?.dispose();
      this.optimizer.m.set(n, toInternal(s, m.data));
      this.optimizer.v.set(n, toInternal(s, v.data));
    }
    this.optimizer.step = step;
  }

  modelTensors(): Map<string, FloatTensor> {
    return new Map(this.specs.map((s) => [s.name, toTorch(s, this.params.get(s.name)!)]));
  }

  optimizerTensors(): Map<string, FloatTensor> {
    const out = new Map<string, FloatTensor>();
    for (const n of this.trainable) {
      const s = this.bySpec.get(n)!;
      // A moment the optimizer has not created yet (no step taken) is zero.
      const moment = (t: tf.Tensor | undefined): FloatTensor =>
        t ? toTorch(s, t) : { shape: s.torchShape, data: new Float32Array(s.torchShape.reduce((a, b) => a * b, 1)) };
      out.set(`${n}.exp_avg`, moment(this.optimizer.m.get(n)));
      out.set(`${n}.exp_avg_sq`, moment(this.optimizer.v.get(n)));
    }
    return out;
  }

  /** The frozen (not trained) parameters: they never change during a shard, so one map serves every step. */
  frozenParams(): Params {
    const trainable = new Set(this.trainable);
    return Object.fromEntries([...this.params].filter(([n]) => !trainable.has(n)));
  }

  dispose(): void {
    for (const t of this.params.values()) t.dispose();
    this.params.clear();
    this.optimizer.dispose();
  }
}
