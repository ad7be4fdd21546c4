/**
 * Matrix products that stay on each backend's fast path.
 *
 * The wasm backend is fast only for untransposed 2-D matMul (XNNPACK): a batched or transposed
 * product runs a generic loop that is 4-20x slower (measured: [4,512,512]x[4,512,512] 1.34 s
 * batched vs 4 x 17.5 ms as 2-D products). So on wasm a batched product is a loop of 2-D
 * products and a transposed operand is transposed explicitly, in the forward pass and, through
 * a custom gradient, in the backward pass (whose products are transposed by nature:
 * dA = dY·Bᵀ, dB = Aᵀ·dY). Other backends use tf.matMul as it is.
 */
import { tf } from '../backend';
import type { ReplayCount } from '../graph';
import { withGradient } from './grad';

/** Products smaller than this (m*k*n) use tf.matMul directly. */
export const SMALL_PRODUCT = 65536;

function swapLast(x: tf.Tensor): tf.Tensor {
  const r = x.rank;
  const perm = Array.from({ length: r }, (_, i) => i);
  perm[r - 2] = r - 1;
  perm[r - 1] = r - 2;
  return x.transpose(perm);
}

/** Untransposed product on the wasm fast path: 2-D directly, batched as a loop of 2-D products. */
function fastProduct(a: tf.Tensor, b: tf.Tensor): tf.Tensor {
  if (a.rank === 2 && b.rank === 2) return tf.matMul(a as tf.Tensor2D, b as tf.Tensor2D);
  const batchShape = a.shape.slice(0, -2);
  const [m, k] = a.shape.slice(-2) as [number, number];
  const n = b.shape[b.rank - 1]!;
  const batch = batchShape.reduce((x, y) => x * y, 1);
  // unstack/stack: one kernel each for the whole batch (a slice per product costs an engine call each).
  const as = tf.unstack(a.reshape([batch, m, k])) as tf.Tensor2D[];
  const bs = tf.unstack(b.reshape([batch, k, n])) as tf.Tensor2D[];
  return tf.stack(as.map((ai, i) => tf.matMul(ai, bs[i]!))).reshape([...batchShape, m, n]);
}

/**
 * X·Yᵀ for 2-D X [M,K] and Y [N,K]. XNNPACK packs the right operand of every product it has not
 * seen (all of them, in training: weights change every step), so X·transpose(Y) transposes and
 * packs N·K values. When X has few rows, (Y·Xᵀ)ᵀ moves only M·K and N·M values: for the input
 * gradient of a linear layer (dY·Wᵀ with 64 token rows and W 1024x1024) about 10x less.
 */
function timesTransposed(X: tf.Tensor2D, Y: tf.Tensor2D): tf.Tensor {
  const [M, K] = X.shape;
  const N = Y.shape[0];
  if (M * (2 * K + N) < 2 * N * K) return tf.matMul(Y, X.transpose()).transpose();
  return tf.matMul(X, Y.transpose());
}

function wasmMatMul(a: tf.Tensor, b: tf.Tensor, transA: boolean, transB: boolean): tf.Tensor {
  const f = withGradient<[tf.Tensor, tf.Tensor], [tf.Tensor, tf.Tensor]>(([x, y], save) => {
    save([x, y]);
    const A = transA ? swapLast(x) : x;
    return {
      value:
        transB && x.rank === 2 && !transA
          ? timesTransposed(x as tf.Tensor2D, y as tf.Tensor2D)
          : fastProduct(A, transB ? swapLast(y) : y),
      gradFunc: (dy, [sx, sy]) => {
        // Aᵀ and Bᵀ straight from the saved operands (an operand saved transposed is already it).
        const At = transA ? sx : swapLast(sx);
        // dL/dA = dY·Bᵀ
        const dA =
          !transB && sy.rank === 2
            ? timesTransposed(dy as tf.Tensor2D, sy as tf.Tensor2D)
            : fastProduct(dy, transB ? sy : swapLast(sy));
        const dB = fastProduct(At, dy); // dL/dB = Aᵀ·dY
        return [transA ? swapLast(dA) : dA, transB ? swapLast(dB) : dB];
      },
    };
  });
  return f(a, b);
}

/**
 * FLOPs (2 per multiply-add) of the products computed through matMul in forward passes, for FLOP/s
 * benchmarks, which count a training step as its forward's x 3. Products of a written-out
 * backward pass run inside `uncounted` (they are in that x 3 already), as does recomputation.
 */
export const matMulStats = { flops: 0, paused: 0 };

/** f() without counting its products in matMulStats. */
export function uncounted<R>(f: () => R): R {
  matMulStats.paused++;
  try {
    return f();
  } finally {
    matMulStats.paused--;
  }
}

/**
 * Counting for graph replay (src/graph.ts): a replayed function runs none of its matMul calls in
 * JavaScript: each call, the first included, counts what its recording counted, unless the caller
 * is not counting. The recording counts its own products as if counted, then takes them back.
 */
export const replayCount: ReplayCount = {
  measure<R>(f: () => R): { value: R; count: number } {
    const paused = matMulStats.paused;
    const before = matMulStats.flops;
    matMulStats.paused = 0;
    try {
      const value = f();
      return { value, count: matMulStats.flops - before };
    } finally {
      matMulStats.paused = paused;
      matMulStats.flops = before;
    }
  },
  replay(count: number): void {
    if (!matMulStats.paused) matMulStats.flops += count;
  },
};

/** a·b with optional transposes of the last two axes; batch dimensions must match (no broadcasting). */
export function matMul(a: tf.Tensor, b: tf.Tensor, transA = false, transB = false): tf.Tensor {
  const m = a.shape[a.rank - (transA ? 1 : 2)]!;
  const k = a.shape[a.rank - (transA ? 2 : 1)]!;
  const n = b.shape[b.rank - (transB ? 2 : 1)]!;
  if (!matMulStats.paused) matMulStats.flops += 2 * a.shape.slice(0, -2).reduce((x, y) => x * y, 1) * m * k * n;
  if (tf.getBackend() !== 'wasm') return tf.matMul(a, b, transA, transB);
  // Below about 64^3 multiply-adds per product the extra ops of the fast path cost more than they save (measured).
  if (m * k * n < SMALL_PRODUCT) return tf.matMul(a, b, transA, transB);
  if (a.rank !== b.rank || a.shape.slice(0, -2).join(',') !== b.shape.slice(0, -2).join(',')) {
    throw new Error(`matMul: batch shapes differ: [${a.shape.join(',')}] x [${b.shape.join(',')}]`);
  }
  return wasmMatMul(a, b, transA, transB);
}
