/**
 * Activation recomputation ("remat"): run a piece of the model without keeping its
 * intermediate activations, and recompute them in the backward pass. Implemented with
 * tf.customGrad: the forward pass keeps only the piece's inputs (and the parameters it uses);
 * the gradient re-runs the piece under tf.grads.
 */
import { tf } from '../backend';
import { withGradient } from './grad';
import { uncounted } from './matmul';

export type Params = Record<string, tf.Tensor>;

export interface RematConfig {
  /** Recompute transformer blocks in groups of this many layers (0 = off). */
  layerGroup: number;
  attention: boolean;
  mlp: boolean;
  forwardSsm: boolean;
  reverseSsm: boolean;
  seqBlock: boolean;
  /** Recompute the TTT scan in groups of this many mini-batches (0 = off). */
  scanGroup: number;
}

export const NO_REMAT: RematConfig = {
  layerGroup: 0,
  attention: false,
  mlp: false,
  forwardSsm: false,
  reverseSsm: false,
  seqBlock: false,
  scanGroup: 0,
};

interface EngineState {
  state: { activeTape: unknown[] | null };
}

/**
 * tf.grads called from inside a gradient function. TensorFlow.js (4.22) starts a fresh tape for
 * it and sets the engine's active tape to null when it ends, which breaks the outer backward pass
 * that is still running; so the outer tape is put back afterwards.
 */
function nestedGrads(f: (...xs: tf.Tensor[]) => tf.Scalar, xs: tf.Tensor[]): tf.Tensor[] {
  const engine = tf.engine() as unknown as EngineState;
  const outer = engine.state.activeTape;
  try {
    return tf.grads(f)(xs);
  } finally {
    engine.state.activeTape = outer;
  }
}

/**
 * f(Q, xs) computed with recomputation. `paramPrefixes` name the parameters f reads from Q:
 * they become inputs of the recomputed piece so that their gradients flow.
 */
export function recomputed(
  P: Params,
  paramPrefixes: string[],
  inputs: tf.Tensor[],
  f: (Q: Params, xs: tf.Tensor[]) => tf.Tensor,
): tf.Tensor {
  const names = Object.keys(P).filter((n) => paramPrefixes.some((p) => n.startsWith(p)));
  const k = inputs.length;
  const run = (all: tf.Tensor[]): tf.Tensor => {
    const Q: Params = { ...P };
    names.forEach((n, i) => (Q[n] = all[k + i]!));
    return f(Q, all.slice(0, k));
  };
  const op = withGradient((all, save) => {
    save(all);
    return {
      value: tf.tidy(() => run(all)),
      // (The recomputed forward's products are not counted as forward FLOPs: matmul.ts uncounted.)
      gradFunc: (dy, saved) =>
        uncounted(() => nestedGrads((...xs: tf.Tensor[]) => run(xs).mul(dy).sum() as tf.Scalar, saved)),
    };
  });
  return op(...inputs, ...names.map((n) => P[n]!));
}
