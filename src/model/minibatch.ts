/** The TTT layers' sequences as mini-batches: [B,H,NC,K,X] and back. */
import { tf } from '../backend';

/**
 * Splits [B,H,NC,K,X] into NC tensors [B,H,K,X]: one transpose to [NC,B,H,K,X], then tf.split,
 * whose gradient is one concat (a slice per mini-batch would make its gradient a zero-padded
 * full-size tensor per mini-batch: memory quadratic in the sequence length).
 */
export function miniBatches(x: tf.Tensor): tf.Tensor[] {
  const [B, H, NC, K, X] = x.shape as [number, number, number, number, number];
  if (NC === 1) return [x.reshape([B, H, K, X])]; // (tf.split's gradient fails for a single piece)
  const t = x.transpose([2, 0, 1, 3, 4]);
  return tf.split(t, NC, 0).map((p) => p.reshape([B, H, K, X]));
}

/** Stacks NC tensors [B,H,K,X] into [B,H,NC,K,X]. */
export function joinMiniBatches(xs: tf.Tensor[]): tf.Tensor {
  return tf
    .concat(
      xs.map((x) => x.expandDims(0)),
      0,
    )
    .transpose([1, 2, 0, 3, 4]);
}
