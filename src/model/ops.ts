/** Small pure tensor functions shared by the model. */
import { tf } from '../backend';
import { matMul } from './matmul';

const SQRT_2_OVER_PI = Math.sqrt(2 / Math.PI);

/** GELU, tanh approximation. */
export function geluTanh(x: tf.Tensor): tf.Tensor {
  return tf.tidy(() => {
    // x*x*x rather than x.pow(3): pow is several times slower on wasm.
    const inner = x.add(x.square().mul(x).mul(0.044715)).mul(SQRT_2_OVER_PI);
    return x.mul(0.5).mul(inner.tanh().add(1));
  });
}

/** d/dx of geluTanh. */
export function geluTanhGrad(x: tf.Tensor): tf.Tensor {
  return tf.tidy(() => {
    const t = x.add(x.square().mul(x).mul(0.044715)).mul(SQRT_2_OVER_PI).tanh();
    const dInner = x.square().mul(3 * 0.044715).add(1).mul(SQRT_2_OVER_PI);
    return t.add(1).mul(0.5).add(x.mul(0.5).mul(tf.scalar(1).sub(t.square())).mul(dInner));
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
