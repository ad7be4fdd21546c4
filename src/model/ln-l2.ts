/**
 * The TTT inner loss's gradient and its backward, written out (shared by ttt.ts's TTT-Linear and
 * ttt-mlp.ts's TTT-MLP scan).
 *
 * G = d/dZ of 1/2 ||LN(Z) - target||^2 over D (LN: biased variance, eps added to the variance,
 * weight w and bias b broadcast). The outer backward pass differentiates this inner gradient,
 * and autodiff through its ~20 elementwise ops and reductions took about 55 kernels where the
 * closed form below takes about 35. With xhat = (Z - mean) / std, e = xhat w + b - target, gX = e w:
 *   G = (gX - mean(gX) - xhat mean(gX xhat)) / std.
 * For an upstream P = dL/dG (means over D):
 *   R = (P - mean(P) - xhat mean(P xhat)) / std                     (dL/dgX)
 *   Dh = R w^2 - (P mean(gX xhat) + gX mean(P xhat)) / std          (dL/dxhat)
 *   Ds = -(sum(P G) + sum(Dh xhat)) / std                           (dL/dstd, through xhat too)
 *   dZ = (Dh - mean(Dh)) / std + xhat Ds / D,   dtarget = -R w,
 *   dw = R (e + w xhat),   db = R w   (before summing over the broadcast axes).
 * Checked against finite differences in ttt.test (every input of tttMlp and tttLinear).
 */
import type { tf } from '../backend';
import { standardize } from './ops';

/** G and what its backward needs (inv = 1 / std: a multiply is cheaper than a divide). */
export interface LnL2 {
  xhat: tf.Tensor;
  inv: tf.Tensor;
  e: tf.Tensor;
  gX: tf.Tensor;
  m2: tf.Tensor;
  G: tf.Tensor;
}

export function lnL2Grad(Z: tf.Tensor, target: tf.Tensor, w: tf.Tensor, b: tf.Tensor, eps: number): LnL2 {
  const { y: xhat, inv } = standardize(Z, eps);
  const e = xhat.mul(w).add(b).sub(target);
  const gX = e.mul(w);
  const m2 = gX.mul(xhat).mean(-1, true);
  const G = gX.sub(gX.mean(-1, true)).sub(xhat.mul(m2)).mul(inv);
  return { xhat, inv, e, gX, m2, G };
}

/** From P = dL/dG: dL/dZ, R w (= -dL/dtarget = dL/db before summing) and dL/dw before summing. */
export function lnL2GradBackward(P: tf.Tensor, f: LnL2, w: tf.Tensor): { dZ: tf.Tensor; Rw: tf.Tensor; dw: tf.Tensor } {
  const D = P.shape[P.rank - 1]!;
  const mPx = P.mul(f.xhat).mean(-1, true);
  const R = P.sub(P.mean(-1, true)).sub(f.xhat.mul(mPx)).mul(f.inv);
  const Rw = R.mul(w);
  const Dh = Rw.mul(w).sub(P.mul(f.m2).add(f.gX.mul(mPx)).mul(f.inv));
  const Ds = P.mul(f.G)
    .sum(-1, true)
    .add(Dh.mul(f.xhat).sum(-1, true))
    .mul(f.inv.mul(-1 / D));
  const dZ = Dh.sub(Dh.mean(-1, true)).mul(f.inv).add(f.xhat.mul(Ds));
  return { dZ, Rw, dw: R.mul(f.e.add(f.xhat.mul(w))) };
}
