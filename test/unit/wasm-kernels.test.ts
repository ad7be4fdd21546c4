/**
 * The kernels that replace tfjs-backend-wasm's (src/wasm-kernels.ts): Slice/SplitV/Unpack on random
 * boxes of random tensors, ranks 1 to 6, against an element-by-element reference; Identity and
 * same-dtype Cast share data (no copy) and stay correct when the input is disposed or reassigned.
 */
import assert from 'node:assert/strict';
import { before, test } from 'node:test';
import fc from 'fast-check';
import { initBackend, tf } from '../../src/backend';

before(async () => {
  assert.equal(await initBackend('wasm'), 'wasm');
});

/** Reference slice: element by element through flat indices. */
function refSlice(data: Float32Array, shape: number[], begin: number[], size: number[]): number[] {
  const out: number[] = [];
  const n = size.reduce((a, b) => a * b, 1);
  for (let f = 0; f < n; f++) {
    let rem = f;
    let off = 0;
    let stride = 1;
    const idx: number[] = new Array(size.length);
    for (let i = size.length - 1; i >= 0; i--) {
      idx[i] = rem % size[i]!;
      rem = Math.floor(rem / size[i]!);
    }
    for (let i = size.length - 1; i >= 0; i--) {
      off += (begin[i]! + idx[i]!) * stride;
      stride *= shape[i]!;
    }
    out.push(data[off]!);
  }
  return out;
}

const box = fc
  .array(fc.integer({ min: 1, max: 5 }), { minLength: 1, maxLength: 6 })
  .chain((shape) =>
    fc.tuple(
      fc.constant(shape),
      fc.tuple(
        ...shape.map((s) =>
          fc.integer({ min: 0, max: s }).chain((b) => fc.tuple(fc.constant(b), fc.integer({ min: 0, max: s - b }))),
        ),
      ),
    ),
  );

test('wasm Slice copies exactly the requested box (contiguous and strided, empty included)', () => {
  fc.assert(
    fc.property(box, ([shape, bs]) => {
      const n = shape.reduce((a, b) => a * b, 1);
      const data = Float32Array.from({ length: n }, (_, i) => i + 0.5);
      const x = tf.tensor(data, shape);
      const begin = bs.map(([b]) => b);
      const size = bs.map(([, s]) => s);
      const y = x.slice(begin, size);
      assert.deepEqual(y.shape, size);
      assert.deepEqual(Array.from(y.dataSync()), refSlice(data, shape, begin, size));
      tf.dispose([x, y]);
    }),
    { numRuns: 300, seed: 1 },
  );
});

test('wasm SplitV gives the same pieces as slicing, on every axis', () => {
  const x = tf.tensor(
    Float32Array.from({ length: 2 * 3 * 4 }, (_, i) => i),
    [2, 3, 4],
  );
  const data = x.dataSync() as Float32Array;
  for (let axis = 0; axis < 3; axis++) {
    const sizes = axis === 2 ? [1, 3] : axis === 1 ? [2, 1] : [1, 1];
    const pieces = tf.split(x, sizes, axis);
    let at = 0;
    pieces.forEach((p, i) => {
      const begin = [0, 0, 0];
      const size = [2, 3, 4];
      begin[axis] = at;
      size[axis] = sizes[i]!;
      assert.deepEqual(Array.from(p.dataSync()), refSlice(data, [2, 3, 4], begin, size));
      at += sizes[i]!;
    });
    tf.dispose(pieces);
  }
  x.dispose();
});

test('int32 slices and slice gradients go through the replacement unchanged', () => {
  const x = tf.tensor2d(
    [
      [1, 2, 3],
      [4, 5, 6],
    ],
    [2, 3],
    'int32',
  );
  assert.deepEqual(Array.from(x.slice([0, 1], [2, 2]).dataSync()), [2, 3, 5, 6]);
  const g = tf.grad((t: tf.Tensor) => t.slice([1, 0], [1, 2]).sum())(tf.ones([2, 3]));
  assert.deepEqual(Array.from(g.dataSync()), [0, 0, 0, 1, 1, 0]);
});

test('wasm Unpack gives the same pieces as slicing, on every axis', () => {
  const shape = [2, 3, 4];
  const x = tf.tensor(
    Float32Array.from({ length: 24 }, (_, i) => i),
    shape,
  );
  const data = x.dataSync() as Float32Array;
  for (let axis = 0; axis < 3; axis++) {
    tf.unstack(x, axis).forEach((p, i) => {
      const begin = [0, 0, 0];
      const size = shape.slice();
      begin[axis] = i;
      size[axis] = 1;
      assert.deepEqual(
        p.shape,
        shape.filter((_, j) => j !== axis),
      );
      assert.deepEqual(Array.from(p.dataSync()), refSlice(data, shape, begin, size));
      p.dispose();
    });
  }
  x.dispose();
});

test('wasm Identity and same-dtype Cast share the data; it lives until the last reference goes', () => {
  const buffers = (): number => tf.engine().backend.numDataIds();
  const before = buffers();
  const x = tf.tensor1d([1, 2, 3]);
  const y = tf.clone(x); // Identity
  const z = tf.cast(x, 'float32');
  assert.equal(buffers() - before, 1, 'one buffer for x, its clone and its cast');
  x.dispose();
  y.dispose();
  assert.deepEqual(Array.from(z.dataSync()), [1, 2, 3]);
  z.dispose();
  assert.equal(buffers(), before);
  // A cast to another dtype converts.
  const i = tf.cast(tf.tensor1d([1.7, -2.2]), 'int32');
  assert.deepEqual(Array.from(i.dataSync()), [1, -2]);
  // A variable's saved clone keeps the old value after assign.
  const v = tf.variable(tf.tensor1d([5, 6]));
  const saved = tf.clone(v);
  v.assign(tf.tensor1d([7, 8]));
  assert.deepEqual(Array.from(saved.dataSync()), [5, 6]);
  assert.deepEqual(Array.from(v.dataSync()), [7, 8]);
});
