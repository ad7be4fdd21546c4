/**
 * TTT-MLP and TTT-Linear, dual form, one mini-batch at a time (TTT-Video-DiT's formulas).
 *
 * Shapes: XQ, XK, XV [B,H,NC,K,D]; eta [B,H,NC,K,K]; lnWeight, lnBias [H,D];
 * W1 [B,H,D,F], b1 [B,H,1,F], W2 [B,H,F,D], b2 [B,H,1,D]. Result [B,H,NC,K,D].
 * Inner weights are carried from one mini-batch to the next. Gradients with respect to every
 * input come from TensorFlow.js autodiff through these ops.
 */
import { tf } from '../backend';
import { matMul } from './matmul';
import { geluTanh, geluTanhGrad } from './ops';

export const TTT_LN_EPS = 1e-8;

/** Inputs of tttLinear: W1 [B,H,D,D], b1 [B,H,1,D]. */
export interface TttLinearInputs {
  XQ: tf.Tensor;
  XK: tf.Tensor;
  XV: tf.Tensor;
  eta: tf.Tensor;
  lnWeight: tf.Tensor;
  lnBias: tf.Tensor;
  W1: tf.Tensor;
  b1: tf.Tensor;
}

/** Inputs of tttMlp: W1 [B,H,D,F], b1 [B,H,1,F], W2 [B,H,F,D], b2 [B,H,1,D]. */
export interface TttMlpInputs extends TttLinearInputs {
  W2: tf.Tensor;
  b2: tf.Tensor;
}

/** Layer norm over D with its value and the pieces needed for its backward pass. */
function lnForward(Z: tf.Tensor, w: tf.Tensor, b: tf.Tensor): { y: tf.Tensor; xhat: tf.Tensor; std: tf.Tensor } {
  const mu = Z.mean(-1, true);
  const xc = Z.sub(mu);
  const std = xc.square().mean(-1, true).add(TTT_LN_EPS).sqrt();
  const xhat = xc.div(std);
  return { y: xhat.mul(w).add(b), xhat, std };
}

/** G = d/dZ of 1/2 ||LN(Z) - target||^2. */
function lnFusedL2Grad(Z: tf.Tensor, target: tf.Tensor, w: tf.Tensor, b: tf.Tensor): tf.Tensor {
  const D = Z.shape[Z.shape.length - 1]!;
  const { y, xhat, std } = lnForward(Z, w, b);
  const gXhat = y.sub(target).mul(w);
  return gXhat
    .mul(D)
    .sub(gXhat.sum(-1, true))
    .sub(xhat.mul(gXhat.mul(xhat).sum(-1, true)))
    .div(std.mul(D));
}

function lnApply(Z: tf.Tensor, w: tf.Tensor, b: tf.Tensor): tf.Tensor {
  return lnForward(Z, w, b).y;
}

/**
 * Splits [B,H,NC,K,X] into NC tensors [B,H,K,X]: one transpose to [NC,B,H,K,X], then tf.split,
 * whose gradient is one concat (a slice per mini-batch would make its gradient a zero-padded
 * full-size tensor per mini-batch: memory quadratic in the sequence length).
 */
function miniBatches(x: tf.Tensor): tf.Tensor[] {
  const [B, H, NC, K, X] = x.shape as [number, number, number, number, number];
  if (NC === 1) return [x.reshape([B, H, K, X])]; // (tf.split's gradient fails for a single piece)
  const t = x.transpose([2, 0, 1, 3, 4]);
  return tf.split(t, NC, 0).map((p) => p.reshape([B, H, K, X]));
}

/** Stacks NC tensors [B,H,K,X] into [B,H,NC,K,X]. */
function joinMiniBatches(xs: tf.Tensor[]): tf.Tensor {
  return tf.concat(xs.map((x) => x.expandDims(0)), 0).transpose([1, 2, 0, 3, 4]);
}

function checkShapes(name: string, x: TttMlpInputs | TttLinearInputs): void {
  const q = x.XQ.shape;
  if (q.length !== 5) throw new Error(`${name}: XQ must be [B,H,NC,K,D], got [${q.join(',')}]`);
  for (const k of ['XK', 'XV'] as const) {
    if (x[k].shape.join(',') !== q.join(',')) throw new Error(`${name}: ${k} shape [${x[k].shape.join(',')}] differs from XQ [${q.join(',')}]`);
  }
  const [B, H, NC, K] = q as [number, number, number, number, number];
  if (x.eta.shape.join(',') !== [B, H, NC, K, K].join(',')) throw new Error(`${name}: eta must be [${[B, H, NC, K, K].join(',')}], got [${x.eta.shape.join(',')}]`);
}

/** One mini-batch [B,H,K,D] (eta [B,H,K,K]) and the layer norm of the inner model. */
interface MiniBatch {
  XQ: tf.Tensor;
  X1: tf.Tensor;
  XV: tf.Tensor;
  eta: tf.Tensor;
  /** Last row of eta as a column [B,H,K,1]: the weights of the carried-state update. */
  e: tf.Tensor;
  lnW: tf.Tensor;
  lnB: tf.Tensor;
}

/**
 * Runs `step` over the mini-batches in order, carrying the inner weights from one to the next;
 * `step` returns the mini-batch's output and the updated weights.
 */
function scan<S>(inp: TttLinearInputs, state: S, step: (mb: MiniBatch, state: S) => { out: tf.Tensor; state: S }): tf.Tensor {
  const [B, H, , K, D] = inp.XQ.shape as number[];
  const lnW = inp.lnWeight.reshape([1, H!, 1, D!]);
  const lnB = inp.lnBias.reshape([1, H!, 1, D!]);
  const XQs = miniBatches(inp.XQ);
  const XKs = miniBatches(inp.XK);
  const XVs = miniBatches(inp.XV);
  const etas = miniBatches(inp.eta);
  const outs: tf.Tensor[] = [];
  for (let i = 0; i < XQs.length; i++) {
    const eta = etas[i]!;
    const e = eta.slice([0, 0, K! - 1, 0], [-1, -1, 1, -1]).reshape([B!, H!, K!, 1]);
    const r = step({ XQ: XQs[i]!, X1: XKs[i]!, XV: XVs[i]!, eta, e, lnW, lnB }, state);
    outs.push(r.out);
    state = r.state;
  }
  return joinMiniBatches(outs);
}

/**
 * eta ⊙ (A·Bᵀ + 1): the dual form's query-path coefficients. The +1 folds the bias update
 * (b - eta·G) into the same product as the weight update ((eta ⊙ A·Bᵀ)·G): one product
 * instead of two, forward and backward.
 */
function etaAttn(eta: tf.Tensor, A: tf.Tensor, B: tf.Tensor): tf.Tensor {
  return eta.mul(matMul(A, B, false, true).add(1));
}

/** TTT-MLP: inner model Z2 = gelu_tanh(X·W1 + b1)·W2 + b2, one gradient step per mini-batch. */
export function tttMlp(inp: TttMlpInputs): tf.Tensor {
  checkShapes('tttMlp', inp);
  return tf.tidy(() =>
    scan(inp, { W1: inp.W1, b1: inp.b1, W2: inp.W2, b2: inp.b2 }, ({ XQ, X1, XV, eta, e, lnW, lnB }, { W1, b1, W2, b2 }) => {
      // Inner forward.
      const Z1 = matMul(X1, W1).add(b1);
      const X2 = geluTanh(Z1);
      const Z2 = matMul(X2, W2).add(b2);
      // Inner gradients.
      const G2 = lnFusedL2Grad(Z2, XV.sub(X1), lnW, lnB);
      const G1 = matMul(G2, W2, false, true).mul(geluTanhGrad(Z1));
      // Query path (dual form).
      // (eta ⊙ XQ·X1ᵀ)·G1 + eta·G1 as one product: (eta ⊙ (XQ·X1ᵀ + 1))·G1.
      const Z1bar = matMul(XQ, W1).sub(matMul(etaAttn(eta, XQ, X1), G1)).add(b1);
      const X2bar = geluTanh(Z1bar);
      const Z2bar = matMul(X2bar, W2).sub(matMul(etaAttn(eta, X2bar, X2), G2)).add(b2);
      // Carried state.
      return {
        out: XQ.add(lnApply(Z2bar, lnW, lnB)),
        state: {
          W1: W1.sub(matMul(e.mul(X1), G1, true, false)),
          b1: b1.sub(e.mul(G1).sum(2, true)),
          W2: W2.sub(matMul(e.mul(X2), G2, true, false)),
          b2: b2.sub(e.mul(G2).sum(2, true)),
        },
      };
    }),
  );
}

/** TTT-Linear: inner model Z = X·W1 + b1, one gradient step per mini-batch. */
export function tttLinear(inp: TttLinearInputs): tf.Tensor {
  checkShapes('tttLinear', inp);
  return tf.tidy(() =>
    scan(inp, { W1: inp.W1, b1: inp.b1 }, ({ XQ, X1, XV, eta, e, lnW, lnB }, { W1, b1 }) => {
      const Z1 = matMul(X1, W1).add(b1);
      const G1 = lnFusedL2Grad(Z1, XV.sub(X1), lnW, lnB);
      const Z1bar = matMul(XQ, W1).sub(matMul(etaAttn(eta, XQ, X1), G1)).add(b1);
      return {
        out: XQ.add(lnApply(Z1bar, lnW, lnB)),
        state: { W1: W1.sub(matMul(e.mul(X1), G1, true, false)), b1: b1.sub(e.mul(G1).sum(2, true)) },
      };
    }),
  );
}
