/**
 * 3D rotary position embeddings as in TTT-Video-DiT: the head dimension is split into
 * rotation pairs for time (hd/4 dims), rows (3hd/8) and columns (3hd/8); pairs are adjacent
 * elements (2m, 2m+1). Frequencies theta^(-2j/dim) per axis.
 *
 * Applied as x*cos + rotateHalf(x)*sin with rotateHalf a fixed [hd, hd] matrix, so the
 * rotation is one untransposed 2-D matMul (fast on wasm) instead of strided slices.
 */
import { tf } from '../backend';
import { matMul } from './matmul';

export interface Rope {
  /** [N, hd]: each pair's cos/sin repeated on both elements. */
  cos: tf.Tensor2D;
  sin: tf.Tensor2D;
  /** [hd, hd]: x @ R = (-x1, x0, -x3, x2, ...). */
  rot: tf.Tensor2D;
}

/** Tables for positions (t, r, c) in raster order, t < frames. */
export function ropeTables(frames: number, gridH: number, gridW: number, headDim: number, theta: number): Rope {
  const dimT = headDim / 4;
  const dimH = (3 * headDim) / 8;
  const half = headDim / 2;
  const freqs = (dim: number): number[] => Array.from({ length: dim / 2 }, (_, j) => theta ** ((-2 * j) / dim));
  const fT = freqs(dimT);
  const fH = freqs(dimH);
  const fW = freqs(dimH);
  const n = frames * gridH * gridW;
  const cos = new Float32Array(n * headDim);
  const sin = new Float32Array(n * headDim);
  let row = 0;
  for (let t = 0; t < frames; t++) {
    for (let r = 0; r < gridH; r++) {
      for (let c = 0; c < gridW; c++) {
        const angles = [...fT.map((f) => t * f), ...fH.map((f) => r * f), ...fW.map((f) => c * f)];
        for (let m = 0; m < half; m++) {
          const co = Math.cos(angles[m]!);
          const si = Math.sin(angles[m]!);
          cos[row * headDim + 2 * m] = co;
          cos[row * headDim + 2 * m + 1] = co;
          sin[row * headDim + 2 * m] = si;
          sin[row * headDim + 2 * m + 1] = si;
        }
        row++;
      }
    }
  }
  const rot = new Float32Array(headDim * headDim);
  for (let m = 0; m < half; m++) {
    // out[2m] = -x[2m+1]; out[2m+1] = x[2m]
    rot[(2 * m + 1) * headDim + 2 * m] = -1;
    rot[2 * m * headDim + 2 * m + 1] = 1;
  }
  return {
    cos: tf.tensor2d(cos, [n, headDim]),
    sin: tf.tensor2d(sin, [n, headDim]),
    rot: tf.tensor2d(rot, [headDim, headDim]),
  };
}

/**
 * Rotates x [..., hd] by tables cos/sin that broadcast against x (e.g. [N, hd] for x [.., N, hd],
 * or [N, 1, hd] for x [B, N, H, hd]).
 */
export function applyRope(x: tf.Tensor, cos: tf.Tensor, sin: tf.Tensor, rot: tf.Tensor): tf.Tensor {
  return tf.tidy(() => {
    const shape = x.shape;
    const hd = shape[shape.length - 1]!;
    const rotated = matMul(x.reshape([-1, hd]), rot).reshape(shape);
    return x.mul(cos).add(rotated.mul(sin));
  });
}

export function disposeRope(r: Rope): void {
  r.cos.dispose();
  r.sin.dispose();
  r.rot.dispose();
}
