/** The TTT layers' sequences as mini-batches: [B,H,NC,K,X] and back. */
import { tf } from '../backend';
import { splitAlong } from './ops';

/** [B,H,NC,K,X] as [NC,B,H,K,X]: mini-batch-major, so that a run of mini-batches is a run of the leading axis. */
export function toMiniBatchMajor(x: tf.Tensor): tf.Tensor {
  return x.transpose([2, 0, 1, 3, 4]);
}
/** [NC,B,H,K,X] back to [B,H,NC,K,X]. */
export function fromMiniBatchMajor(x: tf.Tensor): tf.Tensor {
  return x.transpose([1, 2, 0, 3, 4]);
}

/** The n mini-batches of a mini-batch-major [n,B,H,K,X] as n tensors [B,H,K,X] (one tf.split). */
export function splitMiniBatches(x: tf.Tensor): tf.Tensor[] {
  const rest = x.shape.slice(1);
  return splitAlong(x, x.shape[0]!, 0).map((p) => p.reshape(rest));
}

/**
 * Splits [B,H,NC,K,X] into NC tensors [B,H,K,X]: one transpose to [NC,B,H,K,X], then tf.split,
 * whose gradient is one concat (a slice per mini-batch would make its gradient a zero-padded
 * full-size tensor per mini-batch: memory quadratic in the sequence length).
 */
export function miniBatches(x: tf.Tensor): tf.Tensor[] {
  const [B, H, NC, K, X] = x.shape as [number, number, number, number, number];
  if (NC === 1) return [x.reshape([B, H, K, X])]; // (no transpose needed for a single piece)
  return splitMiniBatches(toMiniBatchMajor(x));
}

/** Stacks NC tensors [B,H,K,X] into [B,H,NC,K,X]. */
export function joinMiniBatches(xs: tf.Tensor[]): tf.Tensor {
  return fromMiniBatchMajor(
    tf.concat(
      xs.map((x) => x.expandDims(0)),
      0,
    ),
  );
}
