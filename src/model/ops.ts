/** Small pure tensor functions shared by the model. */
import { tf } from '../backend';
import { matMul } from './matmul';

const SQRT_2_OVER_PI = Math.sqrt(2 / Math.PI);

/**
 * GELU, tanh approximation: 0.5 x (1 + tanh(u)), u = sqrt(2/pi) (x + 0.044715 x^3), computed
 * as x * sigmoid(2u) (the same function: 1 + tanh(u) = 2 sigmoid(2u)) because the wasm backend's
 * Tanh is a scalar loop about 5x slower than its vectorised Sigmoid.
 */
export function geluTanh(x: tf.Tensor): tf.Tensor {
  return tf.tidy(() => x.mul(twiceInner(x).sigmoid()));
}

/** 2u = 2 sqrt(2/pi) (x + 0.044715 x^3); x*x*x rather than x.pow(3), which is several times slower on wasm. */
function twiceInner(x: tf.Tensor): tf.Tensor {
  return x.add(x.square().mul(x).mul(0.044715)).mul(2 * SQRT_2_OVER_PI);
}

/** d/dx of geluTanh: s + 2 x s (1 - s) u', with s = sigmoid(2u) and u' = sqrt(2/pi) (1 + 3 * 0.044715 x^2). */
export function geluTanhGrad(x: tf.Tensor): tf.Tensor {
  return tf.tidy(() => {
    const s = twiceInner(x).sigmoid();
    const dInner = x
      .square()
      .mul(3 * 0.044715)
      .add(1)
      .mul(SQRT_2_OVER_PI);
    return s.add(x.mul(2).mul(s).mul(tf.scalar(1).sub(s)).mul(dInner));
  });
}

/** Layer norm over the last axis (biased variance); weight/bias broadcast against x. */
export function layerNorm(x: tf.Tensor, weight: tf.Tensor | null, bias: tf.Tensor | null, eps: number): tf.Tensor {
  return tf.tidy(() => {
    const mu = x.mean(-1, true);
    const xc = x.sub(mu);
    const v = xc.square().mean(-1, true);
    let y = xc.div(v.add(eps).sqrt());
    if (weight) y = y.mul(weight);
    if (bias) y = y.add(bias);
    return y;
  });
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
