/**
 * AdamW with decoupled weight decay, two learning-rate groups and per-parameter decay, computed
 * as PyTorch's torch.optim.AdamW (bias corrections folded into the step size), plus global-norm
 * gradient clipping as torch.nn.utils.clip_grad_norm_. Works on plain tensors held in maps, so
 * that several trainers can live in one process (no global variable names).
 */
import { tf } from '../backend';

export interface AdamWParamInfo {
  /** "ttt" uses lr_ssm, "base" uses lr. */
  group: 'ttt' | 'base';
  decay: boolean;
}

export interface AdamWOptions {
  beta1: number;
  beta2: number;
  eps: number;
  weightDecay: number;
}

export class AdamW {
  /** First and second moments by parameter name (same layout as the parameter). */
  readonly m = new Map<string, tf.Tensor>();
  readonly v = new Map<string, tf.Tensor>();
  /** Number of steps applied. */
  step = 0;

  constructor(
    readonly info: Map<string, AdamWParamInfo>,
    readonly opts: AdamWOptions,
  ) {}

  /** Moments for `name`, zero if none yet. */
  private moment(map: Map<string, tf.Tensor>, name: string, like: tf.Tensor): tf.Tensor {
    let t = map.get(name);
    if (!t) {
      t = tf.zerosLike(like);
      map.set(name, t);
    }
    return t;
  }

  /** Applies one step in place on `params` (old tensors are disposed). */
  apply(params: Map<string, tf.Tensor>, grads: Map<string, tf.Tensor>, lr: { ttt: number; base: number }): void {
    this.step += 1;
    const { beta1, beta2, eps, weightDecay } = this.opts;
    const bc1 = 1 - beta1 ** this.step;
    const bc2Sqrt = Math.sqrt(1 - beta2 ** this.step);
    for (const [name, g] of grads) {
      const info = this.info.get(name);
      if (!info) throw new Error(`AdamW: no optimizer info for ${name}`);
      const p = params.get(name)!;
      const m = this.moment(this.m, name, p);
      const v = this.moment(this.v, name, p);
      const groupLr = lr[info.group];
      const [mNew, vNew, pNew] = tf.tidy(() => {
        const mN = m.mul(beta1).add(g.mul(1 - beta1));
        const vN = v.mul(beta2).add(g.square().mul(1 - beta2));
        let w: tf.Tensor = p;
        if (info.decay && weightDecay > 0) w = w.mul(1 - groupLr * weightDecay);
        const denom = vN.sqrt().div(bc2Sqrt).add(eps);
        return [mN, vN, w.sub(mN.div(denom).mul(groupLr / bc1))];
      });
      m.dispose();
      v.dispose();
      p.dispose();
      this.m.set(name, mNew);
      this.v.set(name, vNew);
      params.set(name, pNew);
    }
  }

  dispose(): void {
    for (const t of [...this.m.values(), ...this.v.values()]) t.dispose();
    this.m.clear();
    this.v.clear();
  }
}

/** Scales gradients so that their global L2 norm is at most maxNorm; returns the norm before clipping. */
export function clipGlobalNorm(grads: Map<string, tf.Tensor>, maxNorm: number): number {
  const total = tf.tidy(() => tf.addN([...grads.values()].map((g) => g.square().sum())).sqrt());
  const norm = total.dataSync()[0]!;
  total.dispose();
  const coef = Math.min(1, maxNorm / (norm + 1e-6));
  if (coef < 1) {
    for (const [k, g] of grads) {
      grads.set(k, g.mul(coef));
      g.dispose();
    }
  }
  return norm;
}
