/**
 * TTT-MLP over a whole sequence of mini-batches as one op whose gradient is written out
 * (tf.customGrad), forward and backward one mini-batch at a time.
 *
 * Why: autodiff through the dual form (ttt.ts tttMlpReference) runs about 405 kernels a
 * mini-batch forward and backward, 85 of them passes over [K, F] tensors (F = 4 x head dim),
 * which on libtensorflow cost 150-250 µs each at width 1024 and dominated the training step.
 * Written out, with the algebra arranged so that those passes are few (a bias folded into its
 * weights, or a row weight applied to the small operand of a product, is no pass at all), it
 * takes 244 kernels, 49 of them such passes (tf.profile at [1,16,14,64,64], F = 256; the same
 * 30 products). Checked against autodiff of tttMlpReference and against finite differences
 * (ttt.test), on both backends.
 *
 * Notation, per mini-batch and head (the leading [B,H] axes are batch axes of every product):
 * X1 = XK, Xa = [X, 1] (a column of ones), W1a = [W1; b1] [D+1, F], so X1a W1a = X1 W1 + b1;
 * eta [K,K], e = its last row as a column [K,1] (the weights of the carried update);
 * gelu(x) = x s, s = sigmoid(x (V1 + V3 x^2)), its slope Sd = s + x s (1 - s) v', v' = V1 + 3 V3 x^2.
 *
 *   Z1 = X1a W1a, A = gelu(Z1), Z2 = A W2 + b2
 *   G2 = d/dZ2 of 1/2 ||LN(Z2) - T||^2 (T = XV - XK; ln-l2.ts)
 *   P = G2 W2ᵀ, G1 = P ⊙ Sd
 *   M1 = eta ⊙ (XQa X1aᵀ), Z1b = XQa W1a - M1 G1, Ab = gelu(Z1b)
 *   M2 = eta ⊙ (Ab Aᵀ + 1), Z2b = Ab W2 - M2 G2 + b2
 *   out = XQ + LN(Z2b) w + b
 *   W1a' = W1a - (e ⊙ X1a)ᵀ G1, W2' = W2 - Aᵀ (e ⊙ G2), b2' = b2 - Σ_k e ⊙ G2.
 */
import { tf } from '../backend';
import { withGradient } from './grad';
import { matMul, uncounted } from './matmul';
import { joinMiniBatches, miniBatches } from './minibatch';
import { lnL2Grad, lnL2GradBackward } from './ln-l2';
import {
  geluCurvature,
  geluSlope,
  normalizeGrad,
  sigmoidGrad,
  sigmoidOfTwiceInner,
  standardize,
  twiceInnerSlope,
} from './ops';

type T = tf.Tensor;

/** The inner weights carried from one mini-batch to the next. */
type Inner = {
  W1a: T;
  W2: T;
  b2: T;
};

/** The sequence split into mini-batches, from the op's inputs alone. */
interface Sequence {
  XQ: T[];
  XQa: T[];
  X1a: T[];
  /** The reconstruction target XV - XK. */
  T: T[];
  eta: T[];
  e: T[];
  M1: T[];
  /** [XQa X1aᵀ] and eta for the whole sequence [B,H,NC,K,K], and XQa, X1a [B,H,NC,K,D+1] (the backward's batched products). */
  S1pAll: T;
  etaAll: T;
  XQaAll: T;
  X1aAll: T;
  /** The norm's weight and bias as [1,H,1,D]. */
  w: T;
  b: T;
}

type Inputs = [T, T, T, T, T, T, T, T, T, T];

function sequence([XQ, XK, XV, eta, lnWeight, lnBias]: Inputs): Sequence {
  const [B, H, NC, K, D] = XQ.shape as number[];
  const ones = tf.ones([B!, H!, NC!, K!, 1]);
  const XQaAll = tf.concat([XQ, ones], -1);
  const X1aAll = tf.concat([XK, ones], -1);
  // Products that do not depend on the inner weights: one batched product for all mini-batches.
  const S1pAll = matMul(XQaAll, X1aAll, false, true);
  const eLast = eta.slice([0, 0, 0, K! - 1, 0], [-1, -1, -1, 1, -1]).reshape([B!, H!, NC!, K!, 1]);
  return {
    XQ: miniBatches(XQ),
    XQa: miniBatches(XQaAll),
    X1a: miniBatches(X1aAll),
    T: miniBatches(XV.sub(XK)),
    eta: miniBatches(eta),
    e: miniBatches(eLast),
    M1: miniBatches(eta.mul(S1pAll)),
    S1pAll,
    etaAll: eta,
    XQaAll,
    X1aAll,
    w: lnWeight.reshape([1, H!, 1, D!]),
    b: lnBias.reshape([1, H!, 1, D!]),
  };
}

/** What a mini-batch's backward needs from its forward (the inner weights it started from included). */
const SAVED = [
  'W1a',
  'W2',
  'Z1',
  'x2',
  's',
  'A',
  'vp',
  'Sd',
  'xh',
  'inv',
  'ee',
  'gX',
  'm2',
  'G2',
  'P',
  'G1',
  'Z1b',
  'xb2',
  'sb',
  'Ab',
  'S2p',
  'M2',
  'nb',
  'invb',
  'eX1a',
  'eG2',
] as const;
type Saved = Record<(typeof SAVED)[number], T>;

/** One mini-batch forward: its output, what its backward needs, and the next inner weights if `carry`. */
function forwardStep(
  q: Sequence,
  i: number,
  st: Inner,
  eps: number,
  carry: boolean,
): { out: T; saved: Saved; next?: Inner } {
  const { W1a, W2, b2 } = st;
  const [XQa, X1a, e, eta, M1, w, b] = [q.XQa[i]!, q.X1a[i]!, q.e[i]!, q.eta[i]!, q.M1[i]!, q.w, q.b];
  // Inner forward and the slope of its GELU.
  const Z1 = matMul(X1a, W1a);
  const x2 = Z1.square();
  const s = sigmoidOfTwiceInner(Z1, x2);
  const A = Z1.mul(s);
  const vp = twiceInnerSlope(x2);
  const Sd = geluSlope(Z1, vp, s);
  const Z2 = matMul(A, W2).add(b2);
  // Inner gradient of the LN-L2 loss.
  const { xhat: xh, inv, e: ee, gX, m2, G: G2 } = lnL2Grad(Z2, q.T[i]!, w, b, eps);
  const P = matMul(G2, W2, false, true);
  const G1 = P.mul(Sd);
  // Query path (dual form).
  const Z1b = matMul(XQa, W1a).sub(matMul(M1, G1));
  const xb2 = Z1b.square();
  const sb = sigmoidOfTwiceInner(Z1b, xb2);
  const Ab = Z1b.mul(sb);
  const S2p = matMul(Ab, A, false, true).add(1);
  const M2 = eta.mul(S2p);
  const Z2b = matMul(Ab, W2).sub(matMul(M2, G2)).add(b2);
  const { y: nb, inv: invb } = standardize(Z2b, eps);
  const out = q.XQ[i]!.add(nb.mul(w).add(b));
  // The carried update, with e applied to the small operands.
  const eX1a = X1a.mul(e);
  const eG2 = G2.mul(e);
  const next = carry
    ? { W1a: W1a.sub(matMul(eX1a, G1, true)), W2: W2.sub(matMul(A, eG2, true)), b2: b2.sub(eG2.sum(2, true)) }
    : undefined;
  const saved: Saved = {
    W1a,
    W2,
    Z1,
    x2,
    s,
    A,
    vp,
    Sd,
    xh,
    inv,
    ee,
    gX,
    m2,
    G2,
    P,
    G1,
    Z1b,
    xb2,
    sb,
    Ab,
    S2p,
    M2,
    nb,
    invb,
    eX1a,
    eG2,
  };
  return { out, saved, next };
}

/** A mini-batch's gradients: of the inner weights it started from, and its share of the op's inputs. */
type StepGrads = {
  dState: Inner;
  /** dL/dXQa and dL/dX1a without the terms of XQa X1aᵀ (added for the whole sequence). */
  dXQa: T;
  dX1a: T;
  /** dL/dT (T = XV - XK). */
  dT: T;
  /** -dL/dM1 (dL/deta's share through M1 and dL/d(XQa X1aᵀ) follow for the whole sequence). */
  nM1: T;
  /** dL/deta through M2. */
  deta2: T;
  /** dL/de (the carried update's row weights), [B,H,1,K]; zero for the last mini-batch. */
  de: T;
  /** dL/dw and dL/db summed over the mini-batch, [B,H,1,D]. */
  dw: T;
  db: T;
};

/**
 * One mini-batch backward, from dL/dout `g` and the gradient of the inner weights it carried on
 * (`gs`; none for the last mini-batch). Each line undoes one line of forwardStep; a product by a
 * negated small operand stands for a negated large result.
 */
function backwardStep(q: Sequence, i: number, r: Saved, g: T, gs: Inner | undefined): StepGrads {
  const [XQa, X1a, e, eta, M1, w] = [q.XQa[i]!, q.X1a[i]!, q.e[i]!, q.eta[i]!, q.M1[i]!, q.w];
  // out = XQ + LN(Z2b) w + b (dL/dXQ's g itself is added for the whole sequence).
  const dZ2b = normalizeGrad(g.mul(w), r.nb, r.invb);
  // Z2b = Ab W2 - M2 G2 + b2, M2 = eta ⊙ (Ab Aᵀ + 1).
  const nM2 = matMul(dZ2b, r.G2, false, true); // -dL/dM2
  const dS2 = nM2.mul(eta.neg());
  const dAb = matMul(dZ2b, r.W2, false, true).add(matMul(dS2, r.A));
  const dA = [matMul(dS2, r.Ab, true)];
  const dW2 = [matMul(r.Ab, dZ2b, true)];
  const db2 = [dZ2b.sum(2, true)];
  let dG2 = matMul(r.M2, dZ2b, true).neg();
  // Ab = gelu(Z1b).
  const dZ1b = dAb.mul(geluSlope(r.Z1b, twiceInnerSlope(r.xb2), r.sb));
  // Z1b = XQa W1a - M1 G1.
  const nM1 = matMul(dZ1b, r.G1, false, true); // -dL/dM1
  let dG1n = matMul(M1, dZ1b, true); // -dL/dG1
  const dXQa = matMul(dZ1b, r.W1a, false, true);
  let dX1a: T | undefined;
  const dW1a = [matMul(XQa, dZ1b, true)];
  let de: T | undefined;
  if (gs) {
    // W1a' = W1a - (e ⊙ X1a)ᵀ G1.
    dG1n = dG1n.add(matMul(r.eX1a, gs.W1a));
    const T1 = matMul(r.G1, gs.W1a, false, true); // -dL/d(e ⊙ X1a)
    dX1a = T1.mul(e).neg();
    // W2' = W2 - Aᵀ (e ⊙ G2), b2' = b2 - Σ_k e ⊙ G2.
    const Y2 = matMul(r.A, gs.W2).add(gs.b2); // -dL/d(e ⊙ G2)
    dA.push(matMul(r.eG2.neg(), gs.W2, false, true));
    dG2 = dG2.sub(Y2.mul(e));
    de = T1.mul(X1a).sum(-1, true).add(Y2.mul(r.G2).sum(-1, true)).neg();
    dW1a.push(gs.W1a);
    dW2.push(gs.W2);
    db2.push(gs.b2);
  }
  // G1 = P ⊙ Sd, P = G2 W2ᵀ.
  const dPn = dG1n.mul(r.Sd); // -dL/dP
  const dSdn = dG1n.mul(r.P); // -dL/dSd
  dG2 = dG2.sub(matMul(dPn, r.W2));
  dW2.push(matMul(dPn, r.G2.neg(), true));
  // G2, the LN-L2 gradient of Z2.
  const ln = lnL2GradBackward(dG2, { xhat: r.xh, inv: r.inv, e: r.ee, gX: r.gX, m2: r.m2, G: r.G2 }, w);
  const dZ2 = ln.dZ;
  const dw = ln.dw.add(g.mul(r.nb)).sum(2, true);
  const db = ln.Rw.add(g).sum(2, true);
  // Z2 = A W2 + b2.
  db2.push(dZ2.sum(2, true));
  dW2.push(matMul(r.A, dZ2, true));
  dA.push(matMul(dZ2, r.W2, false, true));
  // A = gelu(Z1) and Sd = gelu'(Z1) (gelu'' = s (1 - s) geluCurvature).
  const dZ1 = tf
    .addN(dA)
    .mul(r.Sd)
    .sub(sigmoidGrad(r.s, dSdn.mul(geluCurvature(r.Z1, r.vp, r.A))));
  // Z1 = X1a W1a.
  dW1a.push(matMul(X1a, dZ1, true));
  const dX1aZ = matMul(dZ1, r.W1a, false, true);
  const [B, H, K] = g.shape as number[];
  return {
    dState: { W1a: tf.addN(dW1a), W2: tf.addN(dW2), b2: tf.addN(db2) },
    dXQa,
    dX1a: dX1a ? dX1a.add(dX1aZ) : dX1aZ,
    dT: ln.Rw.neg(),
    nM1,
    deta2: nM2.mul(r.S2p).neg(),
    de: de ? de.reshape([B!, H!, 1, K!]) : tf.zeros([B!, H!, 1, K!]),
    dw,
    db,
  };
}

function flatten(states: Inner[]): T[] {
  return states.flatMap((s) => [s.W1a, s.W2, s.b2]);
}
function unflatten(ts: T[]): Inner[] {
  return Array.from({ length: ts.length / 3 }, (_, j) => ({ W1a: ts[3 * j]!, W2: ts[3 * j + 1]!, b2: ts[3 * j + 2]! }));
}

/**
 * The scan op for a layer-norm eps and a checkpoint group size (0: keep every mini-batch's
 * intermediates; G: keep only the inner weights at every G-th mini-batch and recompute each
 * group's forward in the backward pass).
 */
function scanOp(eps: number, group: number): (...inputs: Inputs) => T {
  return withGradient<Inputs>((inputs, save) => {
    const [XQ, , , , , , W1, b1, W2, b2] = inputs;
    const NC = XQ.shape[2]!;
    const G = group > 0 && group < NC ? group : NC;
    const q = sequence(inputs);
    let st: Inner = { W1a: tf.concat([W1, b1], 2), W2, b2 };
    const outs: T[] = [];
    const starts: Inner[] = [];
    const kept: Saved[] = [];
    for (let i = 0; i < NC; i++) {
      if (i % G === 0) starts.push(st);
      const r = tf.tidy(() => forwardStep(q, i, st, eps, i < NC - 1));
      outs.push(r.out);
      const prev = st;
      if (r.next) st = r.next;
      if (G === NC) {
        kept.push(r.saved);
      } else {
        // Only the group's first inner weights are kept (the first are the op's inputs W2, b2).
        const { W1a: _w1, W2: _w2, ...rest } = r.saved;
        tf.dispose(Object.values(rest));
        if (i > 0 && !starts.includes(prev)) tf.dispose([prev.W1a, prev.W2, prev.b2]);
      }
    }
    save([...inputs, ...flatten(starts), ...kept.flatMap((s) => SAVED.map((k) => s[k]))]);
    return {
      value: joinMiniBatches(outs),
      // (Its products, recomputed forwards included, are not counted as forward FLOPs.)
      gradFunc: (dy, saved) => uncounted(() => tf.tidy(() => backward(dy, saved, eps, G))),
    };
  });
}

function backward(dy: T, saved: T[], eps: number, G: number): T[] {
  const inputs = saved.slice(0, 10) as Inputs;
  const XQ = inputs[0];
  const [, H, NC, K, D] = XQ.shape as number[];
  const q = sequence(inputs);
  const groups = Math.ceil(NC! / G);
  const starts = unflatten(saved.slice(10, 10 + 3 * groups));
  const kept = saved.slice(10 + 3 * groups);
  const gs = miniBatches(dy);
  const steps: StepGrads[] = new Array(NC);
  let carried: Inner | undefined;
  for (let g = groups - 1; g >= 0; g--) {
    const i0 = g * G;
    const i1 = Math.min(NC!, i0 + G);
    // The group's intermediates: kept by the forward pass, or recomputed from its first inner weights.
    const rs: Saved[] = [];
    if (kept.length) {
      for (let i = i0; i < i1; i++)
        rs.push(Object.fromEntries(SAVED.map((k, j) => [k, kept[i * SAVED.length + j]!])) as Saved);
    } else {
      let st = starts[g]!;
      for (let i = i0; i < i1; i++) {
        const r = tf.tidy(() => {
          const f = forwardStep(q, i, st, eps, i < i1 - 1);
          return { saved: f.saved, next: f.next };
        });
        rs.push(r.saved);
        if (r.next) st = r.next;
      }
    }
    for (let i = i1 - 1; i >= i0; i--) {
      const c = carried;
      const s = tf.tidy(() => backwardStep(q, i, rs[i - i0]!, gs[i]!, c));
      steps[i] = s;
      if (c) tf.dispose(Object.values(c));
      carried = s.dState;
    }
    if (!kept.length) tf.dispose(rs.flatMap((r) => Object.values(r)));
  }
  const all = (f: (s: StepGrads) => T): T => joinMiniBatches(steps.map(f));
  // The terms of XQa X1aᵀ (M1 = eta ⊙ XQa X1aᵀ), for the whole sequence at once.
  const nM1 = all((s) => s.nM1);
  const dS1 = nM1.mul(q.etaAll.neg());
  const dXQa = all((s) => s.dXQa).add(matMul(dS1, q.X1aAll));
  const dX1a = all((s) => s.dX1a).add(matMul(dS1, q.XQaAll, true));
  const dT = all((s) => s.dT);
  const firstD = (t: T): T => t.slice([0, 0, 0, 0, 0], [-1, -1, -1, -1, D!]);
  // e is eta's last row.
  const de = tf.pad(
    all((s) => s.de),
    [
      [0, 0],
      [0, 0],
      [0, 0],
      [K! - 1, 0],
      [0, 0],
    ],
  );
  const deta = all((s) => s.deta2)
    .sub(nM1.mul(q.S1pAll))
    .add(de);
  const perHead = (ts: T[]): T => tf.addN(ts).sum(0).reshape([H!, D!]);
  const dW1a = carried!.W1a;
  return [
    dy.add(firstD(dXQa)),
    firstD(dX1a).sub(dT),
    dT,
    deta,
    perHead(steps.map((s) => s.dw)),
    perHead(steps.map((s) => s.db)),
    dW1a.slice([0, 0, 0, 0], [-1, -1, D!, -1]),
    dW1a.slice([0, 0, D!, 0], [-1, -1, 1, -1]),
    carried!.W2,
    carried!.b2,
  ].map((t, j) => t.reshape(inputs[j]!.shape));
}

const ops = new Map<string, (...inputs: Inputs) => T>();

/**
 * TTT-MLP's dual form over [B,H,NC,K,D] inputs (see ttt.ts tttMlp), with the layer norm's eps
 * and the checkpoint group size (remat.scan_checkpoint_group_size; 0 = off).
 */
export function tttMlpScan(
  inp: { XQ: T; XK: T; XV: T; eta: T; lnWeight: T; lnBias: T; W1: T; b1: T; W2: T; b2: T },
  eps: number,
  checkpointGroup: number,
): T {
  const key = `${eps}|${checkpointGroup}`;
  let op = ops.get(key);
  if (!op) {
    op = scanOp(eps, checkpointGroup);
    ops.set(key, op);
  }
  return op(inp.XQ, inp.XK, inp.XV, inp.eta, inp.lnWeight, inp.lnBias, inp.W1, inp.b1, inp.W2, inp.b2);
}
