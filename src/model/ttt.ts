/**
 * TTT-MLP and TTT-Linear, dual form, one mini-batch at a time (TTT-Video-DiT's formulas).
 *
 * Shapes: XQ, XK, XV [B,H,NC,K,D]; eta [B,H,NC,K,K]; lnWeight, lnBias [H,D];
 * W1 [B,H,D,F], b1 [B,H,1,F], W2 [B,H,F,D], b2 [B,H,1,D]. Result [B,H,NC,K,D].
 * Inner weights are carried from one mini-batch to the next. tttMlp's gradients are written out
 * for the whole scan (ttt-mlp.ts); tttLinear's, and tttMlpReference's, come from TensorFlow.js
 * autodiff through the ops below (with the inner LN-L2 gradient's written out).
 */
import { tf } from '../backend';
import { matMul } from './matmul';
import { withGradient } from './grad';
import { geluTanh, geluTanhGrad, layerNorm, splitAlong, sumToShape } from './ops';
import { lnL2Grad, lnL2GradBackward } from './ln-l2';
import { recomputed } from './remat';
import { joinMiniBatches, miniBatches } from './minibatch';
import { tttMlpScan } from './ttt-mlp';

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

/** lnL2Grad (ln-l2.ts) with its gradient written out, for TTT-Linear's autodiff scan. */
const lnFusedL2Grad = withGradient<
  [tf.Tensor, tf.Tensor, tf.Tensor, tf.Tensor],
  [tf.Tensor, tf.Tensor, tf.Tensor, tf.Tensor, tf.Tensor, tf.Tensor, tf.Tensor]
>(([Z, target, w, b], save) => {
  const f = lnL2Grad(Z, target, w, b, TTT_LN_EPS);
  const bShape = b.shape;
  save([f.xhat, f.inv, f.e, f.gX, f.m2, f.G, w]);
  return {
    value: f.G,
    gradFunc: (P, [xhat, inv, e, gX, m2, G, sw]) => {
      const g = lnL2GradBackward(P, { xhat, inv, e, gX, m2, G }, sw);
      return [g.dZ, g.Rw.neg(), sumToShape(g.dw, sw.shape), sumToShape(g.Rw, bShape)];
    },
  };
});

function checkShapes(name: string, x: TttMlpInputs | TttLinearInputs): void {
  const q = x.XQ.shape;
  if (q.length !== 5) throw new Error(`${name}: XQ must be [B,H,NC,K,D], got [${q.join(',')}]`);
  for (const k of ['XK', 'XV'] as const) {
    if (x[k].shape.join(',') !== q.join(','))
      throw new Error(`${name}: ${k} shape [${x[k].shape.join(',')}] differs from XQ [${q.join(',')}]`);
  }
  const [B, H, NC, K] = q as [number, number, number, number, number];
  if (x.eta.shape.join(',') !== [B, H, NC, K, K].join(','))
    throw new Error(`${name}: eta must be [${[B, H, NC, K, K].join(',')}], got [${x.eta.shape.join(',')}]`);
}

/** One mini-batch [B,H,K,D] (eta [B,H,K,K]) and the layer norm of the inner model. */
interface MiniBatch {
  XQ: tf.Tensor;
  X1: tf.Tensor;
  XV: tf.Tensor;
  eta: tf.Tensor;
  lnW: tf.Tensor;
  lnB: tf.Tensor;
}

type State = Record<string, tf.Tensor>;

/** Options of the mini-batch scan. */
export interface ScanOptions {
  /**
   * Recompute the scan in groups of this many mini-batches in the backward pass
   * (remat.scan_checkpoint_group_size): only each group's inputs and the inner weights at group
   * boundaries are kept. 0 = keep everything.
   */
  checkpointGroup?: number;
}

/**
 * One mini-batch's output, and how to get the updated inner weights from `e`, the last row of
 * eta as a column [B,H,K,1] (the weights of the carried-state update).
 */
interface StepResult<S> {
  out: tf.Tensor;
  next: (e: tf.Tensor) => S;
}

/**
 * Runs `step` over the mini-batches in order, carrying the inner weights from one to the next.
 * The weights after the last mini-batch are never used, so they are not computed (two products
 * and their updates per scan: FLOPs the step would spend on nothing).
 */
function scan<S extends State>(
  inp: TttLinearInputs,
  state: S,
  step: (mb: MiniBatch, state: S) => StepResult<S>,
  opts: ScanOptions = {},
): tf.Tensor {
  const [B, H, NC, K, D] = inp.XQ.shape as number[];
  const XQs = miniBatches(inp.XQ);
  const XKs = miniBatches(inp.XK);
  const XVs = miniBatches(inp.XV);
  const etas = miniBatches(inp.eta);
  /**
   * The given mini-batches from `st`, with the per-mini-batch tensors and norms given; the
   * weights after the last of them only if `keepLast` (else the state returned is stale).
   */
  const run = (
    xq: tf.Tensor[],
    xk: tf.Tensor[],
    xv: tf.Tensor[],
    et: tf.Tensor[],
    lnWeight: tf.Tensor,
    lnBias: tf.Tensor,
    st: S,
    keepLast: boolean,
  ): { outs: tf.Tensor[]; state: S } => {
    const lnW = lnWeight.reshape([1, H!, 1, D!]);
    const lnB = lnBias.reshape([1, H!, 1, D!]);
    const outs: tf.Tensor[] = [];
    for (let i = 0; i < xq.length; i++) {
      const eta = et[i]!;
      const r = step({ XQ: xq[i]!, X1: xk[i]!, XV: xv[i]!, eta, lnW, lnB }, st);
      outs.push(r.out);
      if (keepLast || i < xq.length - 1)
        st = r.next(eta.slice([0, 0, K! - 1, 0], [-1, -1, 1, -1]).reshape([B!, H!, K!, 1]));
    }
    return { outs, state: st };
  };
  const G = opts.checkpointGroup ?? 0;
  if (G <= 0 || G >= NC!) return joinMiniBatches(run(XQs, XKs, XVs, etas, inp.lnWeight, inp.lnBias, state, false).outs);
  // Grouped: each group is one recomputed piece whose output packs the group's outputs and the
  // carried weights into one flat tensor (tf.customGrad has a single output); the last group
  // packs only its outputs.
  const allKeys = Object.keys(state);
  const outs: tf.Tensor[] = [];
  for (let i0 = 0; i0 < NC!; i0 += G) {
    const n = Math.min(G, NC! - i0);
    const keepLast = i0 + n < NC!;
    const keys = keepLast ? allKeys : [];
    const pieces = [XQs, XKs, XVs, etas].map((xs) => xs.slice(i0, i0 + n));
    const shapes = [...Array.from({ length: n }, () => [B!, H!, K!, D!]), ...keys.map((k) => state[k]!.shape)];
    const packed = recomputed(
      {},
      [],
      [...pieces.flat(), inp.lnWeight, inp.lnBias, ...allKeys.map((k) => state[k]!)],
      (_, xs) => {
        const at = (j: number): tf.Tensor[] => xs.slice(j * n, (j + 1) * n);
        const st = Object.fromEntries(allKeys.map((k, j) => [k, xs[4 * n + 2 + j]!])) as S;
        const r = run(at(0), at(1), at(2), at(3), xs[4 * n]!, xs[4 * n + 1]!, st, keepLast);
        return tf.concat([...r.outs, ...keys.map((k) => r.state[k]!)].map((t) => t.reshape([-1])));
      },
    );
    const sizes = shapes.map((sh) => sh.reduce((a, b) => a * b, 1));
    const parts = splitAlong(packed, sizes, 0).map((t, j) => t.reshape(shapes[j]!));
    outs.push(...parts.slice(0, n));
    if (keepLast) state = Object.fromEntries(keys.map((k, j) => [k, parts[n + j]!])) as S;
  }
  return joinMiniBatches(outs);
}

/**
 * [A·W, B·W] as one product of the rows of A and B stacked: one larger product instead of two
 * small ones (fewer kernels, and a product of 2K rows runs closer to the backend's peak).
 */
function sharedProduct(A: tf.Tensor, B: tf.Tensor, W: tf.Tensor): [tf.Tensor, tf.Tensor] {
  const r = A.rank - 2;
  return tf.split(matMul(tf.concat([A, B], r), W), [A.shape[r]!, B.shape[r]!], r) as [tf.Tensor, tf.Tensor];
}

/**
 * eta ⊙ (A·Bᵀ + 1): the dual form's query-path coefficients. The +1 folds the bias update
 * (b - eta·G) into the same product as the weight update ((eta ⊙ A·Bᵀ)·G): one product
 * instead of two, forward and backward.
 */
function etaAttn(eta: tf.Tensor, A: tf.Tensor, B: tf.Tensor): tf.Tensor {
  return eta.mul(matMul(A, B, false, true).add(1));
}

/**
 * TTT-MLP: inner model Z2 = gelu_tanh(X·W1 + b1)·W2 + b2, one gradient step per mini-batch. The
 * whole scan is one op with its gradient written out (ttt-mlp.ts).
 */
export function tttMlp(inp: TttMlpInputs, opts: ScanOptions = {}): tf.Tensor {
  checkShapes('tttMlp', inp);
  return tttMlpScan(inp, TTT_LN_EPS, opts.checkpointGroup ?? 0);
}

/**
 * TTT-MLP written plainly, mini-batch by mini-batch, its gradient by autodiff: the reference
 * the tests check tttMlp's written-out gradient against (values and gradients).
 */
export function tttMlpReference(inp: TttMlpInputs, opts: ScanOptions = {}): tf.Tensor {
  checkShapes('tttMlpReference', inp);
  return tf.tidy(() =>
    scan(
      inp,
      { W1: inp.W1, b1: inp.b1, W2: inp.W2, b2: inp.b2 },
      ({ XQ, X1, XV, eta, lnW, lnB }, { W1, b1, W2, b2 }) => {
        // Inner forward (X1·W1, with the query path's XQ·W1 in the same product).
        const [X1W1, XQW1] = sharedProduct(X1, XQ, W1);
        const Z1 = X1W1.add(b1);
        const X2 = geluTanh(Z1);
        const Z2 = matMul(X2, W2).add(b2);
        // Inner gradients.
        const G2 = lnFusedL2Grad(Z2, XV.sub(X1), lnW, lnB);
        const G1 = matMul(G2, W2, false, true).mul(geluTanhGrad(Z1));
        // Query path (dual form).
        // (eta ⊙ XQ·X1ᵀ)·G1 + eta·G1 as one product: (eta ⊙ (XQ·X1ᵀ + 1))·G1.
        const Z1bar = XQW1.sub(matMul(etaAttn(eta, XQ, X1), G1)).add(b1);
        const X2bar = geluTanh(Z1bar);
        const Z2bar = matMul(X2bar, W2)
          .sub(matMul(etaAttn(eta, X2bar, X2), G2))
          .add(b2);
        // Carried state.
        return {
          out: XQ.add(layerNorm(Z2bar, lnW, lnB, TTT_LN_EPS)),
          next: (e) => ({
            W1: W1.sub(matMul(e.mul(X1), G1, true, false)),
            b1: b1.sub(e.mul(G1).sum(2, true)),
            W2: W2.sub(matMul(e.mul(X2), G2, true, false)),
            b2: b2.sub(e.mul(G2).sum(2, true)),
          }),
        };
      },
      opts,
    ),
  );
}

/** TTT-Linear: inner model Z = X·W1 + b1, one gradient step per mini-batch. */
export function tttLinear(inp: TttLinearInputs, opts: ScanOptions = {}): tf.Tensor {
  checkShapes('tttLinear', inp);
  return tf.tidy(() =>
    scan(
      inp,
      { W1: inp.W1, b1: inp.b1 },
      ({ XQ, X1, XV, eta, lnW, lnB }, { W1, b1 }) => {
        const [X1W1, XQW1] = sharedProduct(X1, XQ, W1);
        const Z1 = X1W1.add(b1);
        const G1 = lnFusedL2Grad(Z1, XV.sub(X1), lnW, lnB);
        const Z1bar = XQW1.sub(matMul(etaAttn(eta, XQ, X1), G1)).add(b1);
        return {
          out: XQ.add(layerNorm(Z1bar, lnW, lnB, TTT_LN_EPS)),
          next: (e) => ({ W1: W1.sub(matMul(e.mul(X1), G1, true, false)), b1: b1.sub(e.mul(G1).sum(2, true)) }),
        };
      },
      opts,
    ),
  );
}
