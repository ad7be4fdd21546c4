/** Small pure tensor functions shared by the model. */
import { tf } from '../backend';
import { withGradient } from './grad';
import { matMul } from './matmul';

/** GELU (tanh approximation) as x sigmoid(v), v = 2 sqrt(2/pi) (x + 0.044715 x^3) = x (GELU_V1 + GELU_V3 x^2). */
export const GELU_V1 = 2 * Math.sqrt(2 / Math.PI);
export const GELU_V3 = GELU_V1 * 0.044715;

/**
 * dy * y * (1 - y), the derivative of sigmoid at y = sigmoid(x) times dy: libtensorflow's own
 * SigmoidGrad kernel (one pass over the tensors) where the backend has it (src/native-kernels.ts
 * registers it for tensorflow; it does not broadcast), else three ops.
 */
export function sigmoidGrad(y: tf.Tensor, dy: tf.Tensor): tf.Tensor {
  if (tf.util.arraysEqual(y.shape, dy.shape) && tf.getKernel('SigmoidGrad', tf.getBackend()))
    return tf.engine().runKernel('SigmoidGrad', { y, dy }) as tf.Tensor;
  return dy.mul(y.sub(y.square()));
}

/**
 * s = sigmoid(v), v = 2u = 2 sqrt(2/pi) (x + 0.044715 x^3), and v' = dv/dx. GELU (tanh
 * approximation) is 0.5 x (1 + tanh(u)) = x s (1 + tanh(u) = 2 sigmoid(2u)), computed with
 * Sigmoid because the wasm backend's Tanh is a scalar loop about 5x slower than its vectorised
 * Sigmoid; x*x rather than x.pow, which is several times slower on wasm. These pieces serve
 * geluTanh and geluTanhGrad here and the TTT-MLP scan's written-out gradient (ttt-mlp.ts).
 */
export function sigmoidOfTwiceInner(x: tf.Tensor, x2: tf.Tensor): tf.Tensor {
  return x2.mul(GELU_V3).add(GELU_V1).mul(x).sigmoid();
}
/** v' from x^2. */
export function twiceInnerSlope(x2: tf.Tensor): tf.Tensor {
  return x2.mul(3 * GELU_V3).add(GELU_V1);
}

/** g'(x) = s + x s (1 - s) v' from x, v' and s. */
export function geluSlope(x: tf.Tensor, vp: tf.Tensor, s: tf.Tensor): tf.Tensor {
  return sigmoidGrad(s, x.mul(vp)).add(s);
}

/**
 * c with g''(x) = s (1 - s) c, from x, v' and g(x) = x s:
 * c = 2 v' + x v'^2 (1 - 2 s) + 12 sqrt(2/pi) 0.044715 x^2 = v' (v' (x - 2 g) + 4) - 2 GELU_V1
 * (4 v' - 2 GELU_V1 = 2 v' + 6 GELU_V3 x^2).
 */
export function geluCurvature(x: tf.Tensor, vp: tf.Tensor, g: tf.Tensor): tf.Tensor {
  return vp.mul(vp.mul(x.sub(g.mul(2))).add(4)).sub(2 * GELU_V1);
}

/**
 * GELU, tanh approximation, with its derivative written out (tf.customGrad): autodiff through
 * its 7 elementwise ops would take about twice as many kernels in the backward pass as the
 * closed form does (every kernel is a pass over the tensor and, on libtensorflow, tens of
 * microseconds of dispatch). Checked against the tanh formula and finite differences in ttt.test.
 */
export const geluTanh = withGradient<[tf.Tensor], [tf.Tensor, tf.Tensor]>(([x], save) => {
  const x2 = x.square();
  const s = sigmoidOfTwiceInner(x, x2);
  save([x, s]);
  return {
    value: x.mul(s),
    gradFunc: (dy, [sx, ss]) => dy.mul(geluSlope(sx, twiceInnerSlope(sx.square()), ss)),
  };
});

/**
 * d/dx of geluTanh: g' = s + x s (1 - s) v', with v' = 2 sqrt(2/pi) (1 + 3 * 0.044715 x^2). Its
 * own derivative (the TTT inner gradient is differentiated by the outer backward pass) is
 * written out too: g'' = s (1 - s) (2 v' + x v'^2 (1 - 2 s) + 12 sqrt(2/pi) 0.044715 x^2).
 */
export const geluTanhGrad = withGradient<[tf.Tensor], [tf.Tensor, tf.Tensor]>(([x], save) => {
  const x2 = x.square();
  const s = sigmoidOfTwiceInner(x, x2);
  save([x, s]);
  return {
    value: geluSlope(x, twiceInnerSlope(x2), s),
    gradFunc: (dy, [xs, sg]) => sigmoidGrad(sg, dy.mul(geluCurvature(xs, twiceInnerSlope(xs.square()), xs.mul(sg)))),
  };
});

const normalizers = new Map<number, (x: tf.Tensor) => tf.Tensor>();

/** dL/dx of y = normalize(x), from dL/dy and standardize's y and inv: (dy - mean(dy) - y mean(dy y)) inv. */
export function normalizeGrad(dy: tf.Tensor, y: tf.Tensor, inv: tf.Tensor): tf.Tensor {
  return dy
    .sub(dy.mean(-1, true))
    .sub(y.mul(dy.mul(y).mean(-1, true)))
    .mul(inv);
}

/** (x - mean) * inv over the last axis, and inv = 1 / sqrt(var + eps) (biased variance): normalize's forward. */
export function standardize(x: tf.Tensor, eps: number): { y: tf.Tensor; inv: tf.Tensor } {
  const xc = x.sub(x.mean(-1, true));
  const inv = xc.square().mean(-1, true).add(eps).rsqrt();
  return { y: xc.mul(inv), inv };
}

/**
 * (x - mean) / sqrt(var + eps) over the last axis (biased variance), with its gradient written
 * out (tf.customGrad): dx = (dy - mean(dy) - y mean(dy y)) / std, 7 kernels where autodiff
 * through the 7 forward ops takes about twice as many (each a pass over the tensor). Exact with
 * eps too: y and std are the forward's own. It multiplies by 1/std (Rsqrt of the small variance
 * tensor) rather than dividing by std: libtensorflow's broadcasting RealDiv took 80-120 µs where
 * the broadcasting Mul took 25-30 µs ([1,16,64,64] by [1,16,64,1], measured).
 */
export function normalize(x: tf.Tensor, eps: number): tf.Tensor {
  let f = normalizers.get(eps);
  if (!f) {
    f = withGradient<[tf.Tensor], [tf.Tensor, tf.Tensor]>(([v], save) => {
      const { y, inv } = standardize(v, eps);
      save([y, inv]);
      return {
        value: y,
        gradFunc: (dy, [sy, sinv]) => normalizeGrad(dy, sy, sinv),
      };
    });
    normalizers.set(eps, f);
  }
  return f(x);
}

/** Layer norm over the last axis (biased variance); weight/bias broadcast against x. */
export function layerNorm(x: tf.Tensor, weight: tf.Tensor | null, bias: tf.Tensor | null, eps: number): tf.Tensor {
  return tf.tidy(() => {
    let y = normalize(x, eps);
    if (weight) y = y.mul(weight);
    if (bias) y = y.add(bias);
    return y;
  });
}

/**
 * tf.split into `sizes` (a count or the sizes) along `axis`, except that a single piece is x
 * itself: TensorFlow.js 4.22's gradient of a one-piece split throws.
 */
export function splitAlong(x: tf.Tensor, sizes: number | number[], axis: number): tf.Tensor[] {
  return (typeof sizes === 'number' ? sizes : sizes.length) === 1 ? [x] : tf.split(x, sizes, axis);
}

/** Sums t over the axes where `shape` (right-aligned, as broadcasting aligns) is 1: the gradient of a broadcast operand. */
export function sumToShape(t: tf.Tensor, shape: number[]): tf.Tensor {
  const axes = tf.backend_util.getReductionAxes(shape, t.shape); // as TensorFlow.js's own broadcast gradients
  return (axes.length ? t.sum(axes, true) : t).reshape(shape);
}

export function silu(x: tf.Tensor): tf.Tensor {
  return tf.tidy(() => x.mul(x.sigmoid()));
}

/** x [..., in] times W stored as [in, out] plus bias [out]. */
export function linear(x: tf.Tensor, w: tf.Tensor, b?: tf.Tensor | null): tf.Tensor {
  return tf.tidy(() => {
    const shape = x.shape;
    const inDim = shape[shape.length - 1]!;
    const y2 = matMul(x.reshape([-1, inDim]), w);
    const y = y2.reshape([...shape.slice(0, -1), w.shape[1]!]);
    return b ? y.add(b) : y;
  });
}
