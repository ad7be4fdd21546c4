/**
 * A Slice kernel for the wasm backend that reads its input in place.
 *
 * tfjs-backend-wasm 4.22's Slice (and SplitV, which calls it once per piece) starts with
 * `backend.readSync(x)`, which copies the WHOLE input out of the wasm heap before copying the
 * slice: every slice costs the size of its input, and splitting a tensor into n pieces costs n
 * full copies. In a training step this was the second largest kernel time (2476 slices, 742 ms
 * of a 2.6 s step at width 512, measured with tf.profile). This replacement reads a view of the
 * heap (no copy) and copies only the slice, as contiguous runs. There is no library alternative:
 * the fix belongs in tfjs itself, and upstream has no release with it.
 */
import { tf } from './backend';

/** The parts of tfjs-backend-wasm's BackendWasm that the kernel uses. */
interface WasmBackend {
  makeOutput(shape: number[], dtype: tf.DataType): tf.TensorInfo;
  typedArrayFromHeap(t: tf.TensorInfo): Float32Array | Int32Array | Uint8Array;
}

/** Copies the box [begin, begin+size) of x (shape `shape`) into out, one contiguous run at a time. */
export function copyBox(x: ArrayLike<number> & { subarray(a: number, b: number): ArrayLike<number> }, shape: number[], begin: number[], size: number[], out: { set(a: ArrayLike<number>, offset: number): void }): void {
  const rank = shape.length;
  const strides = new Array<number>(rank).fill(1);
  for (let i = rank - 2; i >= 0; i--) strides[i] = strides[i + 1]! * shape[i + 1]!;
  // The innermost axis that is cut: from there on, each run is contiguous in x.
  let a = rank - 1;
  while (a > 0 && size[a] === shape[a] && begin[a] === 0) a--;
  const run = size[a]! * strides[a]!;
  const idx = new Array<number>(a).fill(0); // odometer over axes 0..a-1
  let o = 0;
  for (;;) {
    let off = begin[a]! * strides[a]!;
    for (let i = 0; i < a; i++) off += (begin[i]! + idx[i]!) * strides[i]!;
    out.set(x.subarray(off, off + run), o);
    o += run;
    let i = a - 1;
    while (i >= 0 && ++idx[i]! === size[i]!) idx[i--] = 0;
    if (i < 0) break;
  }
}

function sliceInPlace(x: tf.TensorInfo, begin: number[], size: number[], backend: WasmBackend): tf.TensorInfo {
  const out = backend.makeOutput(size, x.dtype);
  if (size.some((s) => s === 0)) return out;
  // Views are taken after makeOutput: an allocation can grow (and so replace) the wasm heap.
  copyBox(backend.typedArrayFromHeap(x), x.shape, begin, size, backend.typedArrayFromHeap(out));
  return out;
}

let patched = false;

/** Replaces the wasm backend's Slice and SplitV kernels (numeric dtypes; strings keep the original). */
export function patchWasmSlice(): void {
  if (patched) return;
  const orig = { slice: tf.getKernel('Slice', 'wasm'), split: tf.getKernel('SplitV', 'wasm') };
  if (!orig.slice || !orig.split) return; // wasm backend not registered
  patched = true;
  tf.unregisterKernel('Slice', 'wasm');
  tf.unregisterKernel('SplitV', 'wasm');
  tf.registerKernel({
    kernelName: 'Slice',
    backendName: 'wasm',
    kernelFunc: (args) => {
      const x = args.inputs.x as tf.TensorInfo;
      if (x.dtype === 'string') return orig.slice!.kernelFunc(args);
      const { begin, size } = args.attrs as unknown as { begin: number | number[]; size?: number | number[] };
      const [b, s] = tf.slice_util.parseSliceParams(x as tf.Tensor, begin, size);
      return sliceInPlace(x, b, s, args.backend as WasmBackend);
    },
  });
  tf.registerKernel({
    kernelName: 'SplitV',
    backendName: 'wasm',
    kernelFunc: (args) => {
      const x = args.inputs.x as tf.TensorInfo;
      if (x.dtype === 'string') return orig.split!.kernelFunc(args);
      const { numOrSizeSplits, axis } = args.attrs as unknown as { numOrSizeSplits: number | number[]; axis: number };
      const ax = tf.util.parseAxisParam(axis, x.shape)[0]!;
      const sizes = tf.backend_util.prepareSplitSize(x as tf.Tensor, numOrSizeSplits, ax);
      const begin = x.shape.map(() => 0);
      return sizes.map((n) => {
        const size = x.shape.slice();
        size[ax] = n;
        const out = sliceInPlace(x, begin.slice(), size, args.backend as WasmBackend);
        begin[ax]! += n;
        return out;
      });
    },
  });
}
