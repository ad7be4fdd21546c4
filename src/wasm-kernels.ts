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
import * as tf from '@tensorflow/tfjs';
import { type KernelBody, replaceKernels, share } from './kernel-patch';

/** The parts of tfjs-backend-wasm's BackendWasm that the kernel uses. */
interface WasmBackend {
  makeOutput(shape: number[], dtype: tf.DataType): tf.TensorInfo;
  typedArrayFromHeap(t: tf.TensorInfo): Float32Array | Int32Array | Uint8Array;
  incRef(dataId: tf.DataId): void;
}

/** Copies the box [begin, begin+size) of x (shape `shape`) into out, one contiguous run at a time. */
export function copyBox(
  x: ArrayLike<number> & { subarray(a: number, b: number): ArrayLike<number> },
  shape: number[],
  begin: number[],
  size: number[],
  out: { set(a: ArrayLike<number>, offset: number): void },
): void {
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

const BODIES: Record<string, { input: string; body: KernelBody<WasmBackend> }> = {
  Identity: { input: 'x', body: (x, _a, backend) => share(x, backend) },
  // A cast to another dtype converts: the original kernel does that.
  Cast: { input: 'x', body: (x, a, backend) => (x.dtype === a.dtype ? share(x, backend) : undefined) },
  Slice: {
    input: 'x',
    body: (x, a, backend) => {
      const [b, s] = tf.slice_util.parseSliceParams(x as tf.Tensor, a.begin as number[], a.size as number[]);
      return sliceInPlace(x, b, s, backend);
    },
  },
  SplitV: {
    input: 'x',
    body: (x, a, backend) => {
      const ax = tf.util.parseAxisParam(a.axis as number, x.shape)[0]!;
      const sizes = tf.backend_util.prepareSplitSize(x as tf.Tensor, a.numOrSizeSplits as number[], ax);
      const begin = x.shape.map(() => 0);
      return sizes.map((n) => {
        const size = x.shape.slice();
        size[ax] = n;
        const out = sliceInPlace(x, begin.slice(), size, backend);
        begin[ax]! += n;
        return out;
      });
    },
  },
  Unpack: {
    input: 'value',
    body: (x, a, backend) => {
      const r = x.shape.length;
      const axis = ((a.axis as number) + r) % r;
      const outShape = x.shape.filter((_, i) => i !== axis);
      const size = x.shape.slice();
      size[axis] = 1;
      return Array.from({ length: x.shape[axis]! }, (_, i) => {
        const begin = x.shape.map(() => 0);
        begin[axis] = i;
        return { ...sliceInPlace(x, begin, size, backend), shape: outShape }; // same data, the unstacked axis dropped
      });
    },
  },
};

/** Replaces the wasm backend's Slice, SplitV, Unpack, Identity and Cast kernels (strings and dtype changes keep the originals). */
export function patchWasmKernels(): void {
  if (!patched) patched = replaceKernels('wasm', BODIES);
}
