/**
 * Replacements for a few tfjs-backend-wasm 4.22 kernels that copy more than they need to.
 *
 * Slicing. 
 * tfjs-backend-wasm 4.22's Slice (and SplitV and Unpack, which call it once per piece) starts with
 * `backend.readSync(x)`, which copies the WHOLE input out of the wasm heap before copying the
 * slice: every slice costs the size of its input, and splitting a tensor into n pieces costs n
 * full copies. In a training step this was the second largest kernel time (2476 slices, 742 ms
 * of a 2.6 s step at width 512, measured with tf.profile). This replacement reads a view of the
 * heap (no copy) and copies only the slice, as contiguous runs. There is no library alternative:
 * the fix belongs in tfjs itself, and upstream has no release with it.
 *
 * Identity and same-dtype Cast. The engine clones (Identity) every tensor a kernel saves for its
 * backward pass, and several ops cast float32 to float32; the wasm kernels copy the data each
 * time (1892 Identity and 571 Cast calls per step at width 512), doubling the memory of saved
 * activations. TensorFlow.js data is immutable (a variable's assign swaps its data id), so these
 * share the input's data and count a reference, as the wasm Reshape kernel and the cpu backend's
 * Identity already do.
 */
import { tf } from './backend';

/** The parts of tfjs-backend-wasm's BackendWasm that the kernel uses. */
interface WasmBackend {
  makeOutput(shape: number[], dtype: tf.DataType): tf.TensorInfo;
  typedArrayFromHeap(t: tf.TensorInfo): Float32Array | Int32Array | Uint8Array;
  incRef(dataId: tf.DataId): void;
}

/** The same data under a new tensor, with one more reference. */
function share(x: tf.TensorInfo, backend: WasmBackend): tf.TensorInfo {
  backend.incRef(x.dataId);
  return { dataId: x.dataId, shape: x.shape, dtype: x.dtype };
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

const REPLACED = ['Slice', 'SplitV', 'Unpack', 'Identity', 'Cast'] as const;

/** Replaces the wasm backend's Slice, SplitV, Unpack, Identity and Cast kernels (strings and dtype changes keep the originals). */
export function patchWasmKernels(): void {
  if (patched) return;
  const orig = Object.fromEntries(REPLACED.map((k) => [k, tf.getKernel(k, 'wasm')])) as Record<(typeof REPLACED)[number], tf.KernelConfig | undefined>;
  if (REPLACED.some((k) => !orig[k])) return; // wasm backend not registered
  patched = true;
  for (const k of REPLACED) tf.unregisterKernel(k, 'wasm');
  tf.registerKernel({
    kernelName: 'Identity',
    backendName: 'wasm',
    kernelFunc: (args) => {
      const x = args.inputs.x as tf.TensorInfo;
      return x.dtype === 'string' ? orig.Identity!.kernelFunc(args) : share(x, args.backend as WasmBackend);
    },
  });
  tf.registerKernel({
    kernelName: 'Cast',
    backendName: 'wasm',
    kernelFunc: (args) => {
      const x = args.inputs.x as tf.TensorInfo;
      const { dtype } = args.attrs as unknown as { dtype: tf.DataType };
      return x.dtype === dtype && dtype !== 'string' ? share(x, args.backend as WasmBackend) : orig.Cast!.kernelFunc(args);
    },
  });
  tf.registerKernel({
    kernelName: 'Slice',
    backendName: 'wasm',
    kernelFunc: (args) => {
      const x = args.inputs.x as tf.TensorInfo;
      if (x.dtype === 'string') return orig.Slice!.kernelFunc(args);
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
      if (x.dtype === 'string') return orig.SplitV!.kernelFunc(args);
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
  tf.registerKernel({
    kernelName: 'Unpack',
    backendName: 'wasm',
    kernelFunc: (args) => {
      const x = args.inputs.value as tf.TensorInfo;
      if (x.dtype === 'string') return orig.Unpack!.kernelFunc(args);
      const r = x.shape.length;
      const axis = ((args.attrs as unknown as { axis: number }).axis + r) % r;
      const outShape = x.shape.filter((_, i) => i !== axis);
      const size = x.shape.slice();
      size[axis] = 1;
      return Array.from({ length: x.shape[axis]! }, (_, i) => {
        const begin = x.shape.map(() => 0);
        begin[axis] = i;
        const out = sliceInPlace(x, begin, size, args.backend as WasmBackend);
        return { ...out, shape: outShape }; // same data, the unstacked axis dropped
      });
    },
  });
}
