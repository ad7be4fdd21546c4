/**
 * The tensorflow backend's replaced and added kernels (src/native-kernels.ts) against the
 * pure-JavaScript cpu backend: products on both sides of the small-product line (Eigen's
 * BatchMatMulV3 below it, oneDNN's BatchMatMulV2 above), transposed and with a broadcast batch;
 * SigmoidGrad; Reshape and Cast.
 */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { initBackend, tf } from '../../src/backend';
import { sigmoidGrad } from '../../src/model/ops';
import { rngFor } from '../../src/rng';
import { maxDiff } from '../helpers';
import { nativeSkip } from '../native';

function data(n: number, seed: number): Float32Array {
  const r = rngFor(seed, 3);
  return Float32Array.from({ length: n }, () => 2 * r() - 1);
}

/** [a shape, b shape, transposeA, transposeB]: multiply-adds from 2^12 to 2^24. */
const PRODUCTS: [number[], number[], boolean, boolean][] = [
  [[2, 64, 16], [2, 16, 64], false, false],
  [[2, 16, 64], [2, 16, 64], true, false],
  [[1, 16, 64, 64], [1, 16, 256, 64], false, true],
  [[16, 64, 64], [1, 64, 256], false, false], // broadcast batch, 2^22 multiply-adds
  [[16, 64, 64], [16, 256, 64], true, true],
  [[128, 256], [256, 256], false, false], // 2^23: oneDNN
  [[1, 16, 64, 64], [1, 16, 64, 256], false, false], // 2^24: oneDNN
];

type Outcome = Float32Array[];

function compute(): Outcome {
  return tf.tidy(() => {
    const out: tf.Tensor[] = PRODUCTS.map(([sa, sb, tA, tB], i) =>
      tf.matMul(
        tf.tensor(data(tf.util.sizeFromShape(sa), i), sa),
        tf.tensor(data(tf.util.sizeFromShape(sb), 50 + i), sb),
        tA,
        tB,
      ),
    );
    const y = tf.tensor(data(4096, 90), [64, 64]).sigmoid();
    const dy = tf.tensor(data(4096, 91), [64, 64]);
    out.push(sigmoidGrad(y, dy));
    out.push(y.reshape([16, 256]).reshape([4096]).cast('float32'));
    return out.map((t) => t.dataSync() as Float32Array);
  });
}

test('tensorflow kernels replaced or added here equal the cpu backend: products small and large, SigmoidGrad, Reshape, Cast', async (t) => {
  const skip = nativeSkip();
  if (skip) return t.skip(skip);
  await initBackend('cpu');
  const ref = compute();
  assert.equal(await initBackend('tensorflow'), 'tensorflow');
  const got = compute();
  await initBackend('wasm');
  ref.forEach((r, i) => {
    assert.equal(got[i]!.length, r.length, `output ${i}: length`);
    const { diff, scale } = maxDiff(got[i]!, r);
    assert.ok(scale > 0.1, `output ${i} is not vacuous`);
    assert.ok(diff <= 1e-5 * scale, `output ${i}: differs by ${diff} (max |value| ${scale})`);
  });
});
