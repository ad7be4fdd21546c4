/**
 * TTT-MLP over a whole sequence of mini-batches as one op whose gradient is written out
 * (tf.customGrad). Only the inner steps, which carry the inner weights from one mini-batch to
 * the next, go one mini-batch at a time; the query path (dual form) of all mini-batches runs
 * batched after them, forward and backward.
 *
 * Why: autodiff through the dual form (ttt.ts tttMlpReference) runs about 405 kernels a
 * mini-batch forward and backward, 85 of them passes over [K, F] tensors (F = 4 x head dim),
 * which on libtensorflow cost 150-250 µs each at width 1024 and dominated the training step.
 * Written out, with the algebra arranged so that those passes are few (a bias folded into its
 * weights, or a row weight applied to the small operand of a product, is no pass at all), and
 * with the query path batched, a scan at [1,16,14,64,64] (F = 256) runs 2351 kernels, 168 a
 * mini-batch (tf.profile). Of the 30 products a mini-batch, the inner steps' 15 run one
 * mini-batch at a time and the query path's 15 once for the whole sequence. Batching costs
 * copies (stacking the query path's operands, splitting its gradients) but a batched pass over
 * 14 mini-batches took about 1.45 ms where 14 separate passes take about 2.6 ms. Checked against
 * autodiff of tttMlpReference and against finite differences (ttt.test), on both backends.
 *
 * Layout: the op works mini-batch-major, [NC,B,H,K,*], so that a run of mini-batches (a
 * checkpoint group) is a run of the leading axis and one mini-batch is one piece of a split.
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
import { graphFunction } from '../graph';
import { withGradient } from './grad';
import { matMul, replayCount, uncounted } from './matmul';
import { lnL2Grad, lnL2GradBackward } from './ln-l2';
import { fromMiniBatchMajor as fromMb, splitMiniBatches as unstackMb, toMiniBatchMajor as toMb } from './minibatch';
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

/** unstackMb, freeing the stacked tensor. */
function pieces(x: T): T[] {
  const ps = unstackMb(x);
  x.dispose();
  return ps;
}
/** Mini-batches i0 .. i1-1 of a mini-batch-major tensor (itself when that is all of it). */
function runOf(x: T, i0: number, i1: number): T {
  return i0 === 0 && i1 === x.shape[0] ? x : x.slice([i0], [i1 - i0]);
}
/** The sequence's operands of the query path's products, for mini-batches i0 .. i1-1. */
function queryOperands(q: Sequence, i0: number, i1: number): { XQa: T; M1: T; eta: T } {
  return { XQa: runOf(q.XQa, i0, i1), M1: runOf(q.M1, i0, i1), eta: runOf(q.eta, i0, i1) };
}

/** The sequence, from the op's inputs alone: mini-batch-major [NC,B,H,K,*], and split per mini-batch where the scan needs it. */
interface Sequence {
  XQ: T;
  XQa: T;
  X1a: T;
  eta: T;
  /** M1 = eta ⊙ XQa X1aᵀ and XQa X1aᵀ (products that do not depend on the inner weights). */
  M1: T;
  S1p: T;
  /** Per mini-batch [B,H,K,*]: X1a, the reconstruction target XV - XK, and e (eta's last row as a column). */
  X1aMb: T[];
  TMb: T[];
  eMb: T[];
  /** The norm's weight and bias as [1,H,1,D]. */
  w: T;
  b: T;
}

type Inputs = [T, T, T, T, T, T, T, T, T, T];

function sequence([XQ, XK, XV, eta, lnWeight, lnBias]: Inputs): Sequence {
  const [B, H, NC, K, D] = XQ.shape as number[];
  const ones = tf.ones([NC!, B!, H!, K!, 1]);
  const XQm = toMb(XQ);
  const XQa = tf.concat([XQm, ones], -1);
  const X1a = tf.concat([toMb(XK), ones], -1);
  const etaM = toMb(eta);
  const S1p = matMul(XQa, X1a, false, true);
  const e = etaM.slice([0, 0, 0, K! - 1, 0], [-1, -1, -1, 1, -1]).reshape([NC!, B!, H!, K!, 1]);
  return {
    XQ: XQm,
    XQa,
    X1a,
    eta: etaM,
    M1: etaM.mul(S1p),
    S1p,
    X1aMb: unstackMb(X1a),
    TMb: unstackMb(toMb(XV.sub(XK))),
    eMb: unstackMb(e),
    w: lnWeight.reshape([1, H!, 1, D!]),
    b: lnBias.reshape([1, H!, 1, D!]),
  };
}

/** What a mini-batch's inner step keeps for the backward pass (the inner weights it started from included). */
const INNER = ['W1a', 'W2', 'b2', 'A', 'Sd', 'xh', 'inv', 'ee', 'gX', 'm2', 'G2', 'G1', 'Q', 'eX1a', 'eG2'] as const;
/** (Q only when the backward pass will use it: not in a checkpointed forward, which keeps nothing.) */
type InnerSaved = Omit<Record<(typeof INNER)[number], T>, 'Q'> & { Q?: T };

/**
 * A mini-batch's inner step, the part that carries the inner weights from one mini-batch to the
 * next: the inner model's forward, its gradient on the mini-batch, and the next inner weights if
 * `carry`. With `forBackward`, also Q = P ⊙ gelu''(Z1) (gelu'' = s (1 - s) geluCurvature): the
 * backward pass's only use of P, Z1, s and v', so that one tensor is kept instead of four.
 */
function innerStep(
  q: Sequence,
  i: number,
  st: Inner,
  eps: number,
  carry: boolean,
  forBackward: boolean,
): { saved: InnerSaved; next?: Inner } {
  const { W1a, W2, b2 } = st;
  const [X1a, e] = [q.X1aMb[i]!, q.eMb[i]!];
  // Inner forward and the slope of its GELU.
  const Z1 = matMul(X1a, W1a);
  const x2 = Z1.square();
  const s = sigmoidOfTwiceInner(Z1, x2);
  const A = Z1.mul(s);
  const vp = twiceInnerSlope(x2);
  const Sd = geluSlope(Z1, vp, s);
  const Z2 = matMul(A, W2).add(b2);
  // Inner gradient of the LN-L2 loss.
  const { xhat: xh, inv, e: ee, gX, m2, G: G2 } = lnL2Grad(Z2, q.TMb[i]!, q.w, q.b, eps);
  const P = matMul(G2, W2, false, true);
  const G1 = P.mul(Sd);
  // The carried update, with e applied to the small operands.
  const eX1a = X1a.mul(e);
  const eG2 = G2.mul(e);
  const next = carry
    ? { W1a: W1a.sub(matMul(eX1a, G1, true)), W2: W2.sub(matMul(A, eG2, true)), b2: b2.sub(eG2.sum(2, true)) }
    : undefined;
  const saved: InnerSaved = { W1a, W2, b2, A, Sd, xh, inv, ee, gX, m2, G2, G1, eX1a, eG2 };
  if (forBackward) saved.Q = P.mul(sigmoidGrad(s, geluCurvature(Z1, vp, A)));
  return { saved, next };
}

/** The inner steps' intermediates that the query path stacks (and the backward keeps stacked only). */
const STACKED = ['W1a', 'W2', 'b2', 'A', 'G1', 'G2'] as const;

/** What the query path of a run of mini-batches keeps for the backward pass, mini-batch-major. */
const QUERY = [...STACKED, 'Z1b', 'xb2', 'sb', 'Ab', 'S2p', 'M2', 'nb', 'invb'] as const;
type QuerySaved = Record<(typeof QUERY)[number], T>;

/**
 * The query path (dual form) of mini-batches i0 .. i1-1 at once: it needs each mini-batch's inner
 * weights and inner gradients but carries nothing, so its products and passes run batched over
 * the mini-batches rather than one mini-batch at a time.
 */
function queryForward(
  q: Sequence,
  i0: number,
  i1: number,
  inner: InnerSaved[],
  eps: number,
): { out: T; saved: QuerySaved } {
  const { W1a, W2, b2, A, G1, G2 } = Object.fromEntries(
    STACKED.map((k) => [k, tf.stack(inner.map((r) => r[k]))]),
  ) as Record<(typeof STACKED)[number], T>;
  const { XQa, M1, eta } = queryOperands(q, i0, i1);
  const Z1b = matMul(XQa, W1a).sub(matMul(M1, G1));
  const xb2 = Z1b.square();
  const sb = sigmoidOfTwiceInner(Z1b, xb2);
  const Ab = Z1b.mul(sb);
  const S2p = matMul(Ab, A, false, true).add(1);
  const M2 = eta.mul(S2p);
  const Z2b = matMul(Ab, W2).sub(matMul(M2, G2)).add(b2);
  const { y: nb, inv: invb } = standardize(Z2b, eps);
  const out = runOf(q.XQ, i0, i1).add(nb.mul(q.w).add(q.b));
  return { out, saved: { W1a, W2, b2, A, G1, G2, Z1b, xb2, sb, Ab, S2p, M2, nb, invb } };
}

/** The query path's gradients, from dL/dout of a run of mini-batches (mini-batch-major). */
type QueryGrads = {
  /** Per mini-batch: its shares of dL/dA, dL/dW1a, dL/dW2, dL/db2, dL/dG2 and -dL/dG1. */
  dA: T[];
  dW1a: T[];
  dW2: T[];
  db2: T[];
  dG2: T[];
  dG1n: T[];
  /** Batched: dL/dXQa without the terms of XQa X1aᵀ, -dL/dM1, dL/deta through M2, and dL/dw summed to [H,D]. */
  dXQa: T;
  nM1: T;
  deta2: T;
  dw: T;
};

/** The query path's backward, batched over the run as its forward: each line undoes one of queryForward. */
function queryBackward(q: Sequence, i0: number, i1: number, r: QuerySaved, g: T): QueryGrads {
  const { XQa, M1, eta } = queryOperands(q, i0, i1);
  // out = XQ + LN(Z2b) w + b (dL/dXQ's g itself is added for the whole sequence).
  const dZ2b = normalizeGrad(g.mul(q.w), r.nb, r.invb);
  // Z2b = Ab W2 - M2 G2 + b2, M2 = eta ⊙ (Ab Aᵀ + 1).
  const nM2 = matMul(dZ2b, r.G2, false, true); // -dL/dM2
  const dS2 = nM2.mul(eta.neg());
  const dAb = matMul(dZ2b, r.W2, false, true).add(matMul(dS2, r.A));
  // Ab = gelu(Z1b).
  const dZ1b = dAb.mul(geluSlope(r.Z1b, twiceInnerSlope(r.xb2), r.sb));
  return {
    dA: pieces(matMul(dS2, r.Ab, true)),
    dW2: pieces(matMul(r.Ab, dZ2b, true)),
    db2: pieces(dZ2b.sum(3, true)),
    dG2: pieces(matMul(r.M2.neg(), dZ2b, true)),
    // Z1b = XQa W1a - M1 G1.
    dG1n: pieces(matMul(M1, dZ1b, true)),
    dW1a: pieces(matMul(XQa, dZ1b, true)),
    dXQa: matMul(dZ1b, r.W1a, false, true),
    nM1: matMul(dZ1b, r.G1, false, true),
    deta2: nM2.mul(r.S2p).neg(),
    dw: g.mul(r.nb).sum([0, 1, 3]),
  };
}

/** A mini-batch's inner-step gradients: of the inner weights it started from, and its share of the op's inputs. */
type StepGrads = {
  dState: Inner;
  /** dL/dX1a without the terms of XQa X1aᵀ (added for the whole sequence). */
  dX1a: T;
  /** dL/dT (T = XV - XK). */
  dT: T;
  /** dL/de (the carried update's row weights), [B,H,1,K]; zero for the last mini-batch. */
  de: T;
  /** dL/dw and dL/db through the inner loss, summed over the mini-batch, [B,H,1,D]. */
  dw: T;
  db: T;
};

/**
 * One mini-batch's inner step backward, from its query path's gradients (`qg`, index j) and the
 * gradient of the inner weights it carried on (`gs`; none for the last mini-batch). Each line
 * undoes one line of innerStep; a product by a negated small operand stands for a negated large result.
 */
function innerBackward(
  q: Sequence,
  i: number,
  r: InnerSaved,
  qg: QueryGrads,
  j: number,
  gs: Inner | undefined,
): StepGrads {
  const [X1a, e] = [q.X1aMb[i]!, q.eMb[i]!];
  const dA = [qg.dA[j]!];
  const dW1a = [qg.dW1a[j]!];
  const dW2 = [qg.dW2[j]!];
  const db2 = [qg.db2[j]!];
  let dG2 = qg.dG2[j]!;
  let dG1n = qg.dG1n[j]!; // -dL/dG1
  let dX1a: T | undefined;
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
  dG2 = dG2.sub(matMul(dPn, r.W2));
  dW2.push(matMul(dPn, r.G2.neg(), true));
  // G2, the LN-L2 gradient of Z2.
  const ln = lnL2GradBackward(dG2, { xhat: r.xh, inv: r.inv, e: r.ee, gX: r.gX, m2: r.m2, G: r.G2 }, q.w);
  const dZ2 = ln.dZ;
  // Z2 = A W2 + b2.
  db2.push(dZ2.sum(2, true));
  dW2.push(matMul(r.A, dZ2, true));
  dA.push(matMul(dZ2, r.W2, false, true));
  // A = gelu(Z1) and Sd = gelu'(Z1): -dL/dSd = dG1n ⊙ P, times gelu''(Z1), is dG1n ⊙ Q.
  const dZ1 = tf.addN(dA).mul(r.Sd).sub(dG1n.mul(r.Q!));
  // Z1 = X1a W1a.
  dW1a.push(matMul(X1a, dZ1, true));
  const dX1aZ = matMul(dZ1, r.W1a, false, true);
  const [B, H, K] = dZ1.shape as number[];
  return {
    dState: { W1a: tf.addN(dW1a), W2: tf.addN(dW2), b2: tf.addN(db2) },
    dX1a: dX1a ? dX1a.add(dX1aZ) : dX1aZ,
    dT: ln.Rw.neg(),
    de: de ? de.reshape([B!, H!, 1, K!]) : tf.zeros([B!, H!, 1, K!]),
    dw: ln.dw.sum(2, true),
    db: ln.Rw.sum(2, true),
  };
}

/**
 * The forward of mini-batches i0 .. i1-1 from the inner weights `st`: the inner steps one after
 * another, then the run's query path at once. `next` (when `carryLast`) is the inner weights after
 * it; `forBackward`: the backward pass will use the intermediates (see innerStep).
 */
function forwardRun(
  q: Sequence,
  i0: number,
  i1: number,
  st: Inner,
  eps: number,
  carryLast: boolean,
  forBackward: boolean,
): { out: T; inner: InnerSaved[]; query: QuerySaved; next?: Inner } {
  const inner: InnerSaved[] = [];
  let cur: Inner | undefined = st;
  for (let i = i0; i < i1; i++) {
    const at: Inner = cur!;
    const r: { saved: InnerSaved; next?: Inner } = tf.tidy(() =>
      innerStep(q, i, at, eps, i < i1 - 1 || carryLast, forBackward),
    );
    inner.push(r.saved);
    cur = r.next;
  }
  const { out, saved } = tf.tidy(() => queryForward(q, i0, i1, inner, eps));
  return { out, inner, query: saved, ...(cur ? { next: cur } : {}) };
}

/**
 * The scan op for a layer-norm eps and a checkpoint group size (0: keep every mini-batch's
 * intermediates; G: keep only the inner weights at every G-th mini-batch and recompute each
 * group's forward in the backward pass).
 */
function scanOp(eps: number, group: number): (...inputs: Inputs) => T {
  const groupOf = (inputs: T[]): number => {
    const NC = inputs[0]!.shape[2]!;
    return group > 0 && group < NC ? group : NC;
  };
  // Each pass runs as a libtensorflow graph where it can (src/graph.ts): half the time of eager ops.
  const forward = graphFunction(
    `ttt-mlp forward (group ${group})`,
    (inputs) => {
      const { value, keep } = forwardPass(inputs as Inputs, eps, groupOf(inputs));
      return [value, ...keep];
    },
    replayCount,
  );
  const backwardPass = graphFunction(
    `ttt-mlp backward (group ${group})`,
    ([dy, ...saved]) => backward(dy!, saved, eps, groupOf(saved)),
    replayCount,
  );
  return withGradient<Inputs>((inputs, save) => {
    const [value, ...keep] = forward(inputs);
    save([...inputs, ...keep]);
    return {
      value: value!,
      // (Its products, recomputed forwards included, are not counted as forward FLOPs.)
      gradFunc: (dy, saved) => uncounted(() => tf.tidy(() => backwardPass([dy, ...saved]))),
    };
  });
}

const INNER_OWN = INNER.filter((k) => !(STACKED as readonly string[]).includes(k));

/** The op's output, and what its backward needs besides the inputs: the inner weights at group starts, and without checkpoint groups every intermediate. */
function forwardPass(inputs: Inputs, eps: number, G: number): { value: T; keep: T[] } {
  const [XQ, , , , , , W1, b1, W2, b2] = inputs;
  const NC = XQ.shape[2]!;
  const q = sequence(inputs);
  const starts: Inner[] = [{ W1a: tf.concat([W1, b1], 2), W2, b2 }];
  if (G === NC) {
    const f = forwardRun(q, 0, NC, starts[0]!, eps, false, true);
    return {
      value: fromMb(f.out),
      keep: [
        ...flatten(starts),
        ...f.inner.flatMap((s) => INNER_OWN.map((k) => s[k]!)),
        ...QUERY.map((k) => f.query[k]),
      ],
    };
  }
  // Each group's intermediates are dropped as soon as its output and its last inner weights are out.
  const outs: T[] = [];
  for (let i0 = 0; i0 < NC; i0 += G) {
    const i1 = Math.min(NC, i0 + G);
    const st = starts[starts.length - 1]!;
    const r = tf.tidy(() => {
      const f = forwardRun(q, i0, i1, st, eps, i1 < NC, false);
      return { out: f.out, next: f.next };
    });
    outs.push(r.out);
    if (r.next) starts.push(r.next);
  }
  return { value: fromMb(tf.concat(outs, 0)), keep: flatten(starts) };
}

function flatten(states: Inner[]): T[] {
  return states.flatMap((s) => [s.W1a, s.W2, s.b2]);
}
function unflatten(ts: T[]): Inner[] {
  return Array.from({ length: ts.length / 3 }, (_, j) => ({ W1a: ts[3 * j]!, W2: ts[3 * j + 1]!, b2: ts[3 * j + 2]! }));
}

function backward(dy: T, saved: T[], eps: number, G: number): T[] {
  const inputs = saved.slice(0, 10) as Inputs;
  const XQ = inputs[0];
  const [, H, NC, K, D] = XQ.shape as number[];
  const q = sequence(inputs);
  const groups = Math.ceil(NC! / G);
  const starts = unflatten(saved.slice(10, 10 + 3 * groups));
  const kept = saved.slice(10 + 3 * groups);
  const g = toMb(dy);
  const steps: Omit<StepGrads, 'dState'>[] = new Array(NC);
  const batched: Pick<QueryGrads, 'dXQa' | 'nM1' | 'deta2' | 'dw'>[] = new Array(groups);
  let carried: Inner | undefined;
  for (let k = groups - 1; k >= 0; k--) {
    const i0 = k * G;
    const i1 = Math.min(NC!, i0 + G);
    const c = carried;
    const r = tf.tidy((): { own: Omit<StepGrads, 'dState'>[]; carried: Inner; batched: (typeof batched)[number] } => {
      // The group's intermediates: kept by the forward pass, or recomputed from its first inner weights.
      let inner: InnerSaved[];
      let query: QuerySaved;
      if (kept.length) {
        const q0 = NC! * INNER_OWN.length;
        query = Object.fromEntries(QUERY.map((n, j) => [n, kept[q0 + j]!])) as QuerySaved;
        const per = STACKED.map((n) => unstackMb(query[n]));
        inner = Array.from(
          { length: NC! },
          (_, i) =>
            Object.fromEntries([
              ...INNER_OWN.map((n, j) => [n, kept[i * INNER_OWN.length + j]!]),
              ...STACKED.map((n, j) => [n, per[j]![i]!]),
            ]) as InnerSaved,
        );
      } else {
        ({ inner, query } = forwardRun(q, i0, i1, starts[k]!, eps, false, true));
      }
      const qg = tf.tidy(() => queryBackward(q, i0, i1, query, runOf(g, i0, i1)));
      let gs: Inner | undefined = c;
      const own: Omit<StepGrads, 'dState'>[] = [];
      for (let i = i1 - 1; i >= i0; i--) {
        const at: Inner | undefined = gs;
        const { dState, ...rest } = tf.tidy(() => innerBackward(q, i, inner[i - i0]!, qg, i - i0, at));
        own.unshift(rest);
        tf.dispose([qg.dA, qg.dW1a, qg.dW2, qg.db2, qg.dG2, qg.dG1n].map((ps) => ps[i - i0]!));
        if (at && at !== c) tf.dispose(Object.values(at));
        gs = dState;
      }
      return { own, carried: gs!, batched: { dXQa: qg.dXQa, nM1: qg.nM1, deta2: qg.deta2, dw: qg.dw } };
    });
    r.own.forEach((s, j) => (steps[i0 + j] = s));
    batched[k] = r.batched;
    if (c) tf.dispose(Object.values(c));
    carried = r.carried;
  }
  const all = (f: (s: Omit<StepGrads, 'dState'>) => T): T => tf.stack(steps.map(f));
  const cat = (f: (b: (typeof batched)[number]) => T): T =>
    groups === 1 ? f(batched[0]!) : tf.concat(batched.map(f), 0);
  // The terms of XQa X1aᵀ (M1 = eta ⊙ XQa X1aᵀ), for the whole sequence at once.
  const nM1 = cat((b) => b.nM1);
  const dS1 = nM1.mul(q.eta.neg());
  const dXQa = cat((b) => b.dXQa).add(matMul(dS1, q.X1a));
  const dX1a = all((s) => s.dX1a).add(matMul(dS1, q.XQa, true));
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
  const deta = cat((b) => b.deta2)
    .sub(nM1.mul(q.S1p))
    .add(de);
  const perHead = (ts: T[]): T => tf.addN(ts).sum(0).reshape([H!, D!]);
  const dW1a = carried!.W1a;
  const dw = perHead(steps.map((s) => s.dw)).add(tf.addN(batched.map((b) => b.dw)));
  const db = perHead(steps.map((s) => s.db)).add(dy.sum([0, 2, 3]));
  return [
    fromMb(g.add(firstD(dXQa))),
    fromMb(firstD(dX1a).sub(dT)),
    fromMb(dT),
    fromMb(deta),
    dw,
    db,
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
