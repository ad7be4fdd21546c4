/**
 * Replacements for three tfjs-node 4.22 kernels that dispatch more than they need to (the
 * counterpart of wasm-kernels.ts for the `tensorflow` backend). A training step of the tiny 3 s
 * stage runs about 5000 kernels (4969 at width 32 or 1024), most of them small, so tens of
 * microseconds of dispatch each add up.
 *
 * Same-dtype Cast. tfjs-node runs a libtensorflow Cast op even from float32 to float32, which
 * TensorFlow.js's gradients of Mul, Sub and others ask for on every operand (370 kernels a step).
 * It shares the input's data and counts a reference instead, as tfjs-node's own Identity kernel
 * does (the data is immutable); a real conversion keeps the original kernel.
 *
 * Reshape. tfjs-node builds the target shape as a TensorFlow.js tensor (engine bookkeeping,
 * then a libtensorflow tensor on first use, then disposal) for each of about 840 reshapes a
 * step. This one hands libtensorflow the shape directly and deletes it after the op, and a
 * reshape to the same shape shares the data. There is no library alternative: the fix belongs
 * in tfjs-node, and upstream has no release with it.
 *
 * Small products. tfjs-node runs every product as BatchMatMulV2, which this libtensorflow build
 * hands to oneDNN: fast for large products, but about 100-130 µs of overhead each for small ones
 * (a [2,64,16]x[2,16,64] product: 134 µs, against 19 µs for BatchMatMulV3, which takes Eigen's
 * kernel). A tiny-width step runs thousands of them. Products of at most 2^22 multiply-adds, at
 * most 2^20 per batch item, run as BatchMatMulV3. In a sweep of 15 shapes, Eigen was faster for
 * all 7 below that line, oneDNN for 7 of the 8 above it (16 heads of 64x64x256: 247 µs oneDNN,
 * 299 µs Eigen; a 64x1024x1024 product: 694 and 972 µs).
 *
 * And one kernel TensorFlow.js lacks: SigmoidGrad (dy * y * (1 - y), libtensorflow's own op, one
 * pass over the tensors where TensorFlow.js ops take three), which src/model/ops.ts sigmoidGrad
 * uses where the backend registers it.
 */
import * as tf from '@tensorflow/tfjs';
import { replaceKernels, share } from './kernel-patch';

/** An op attribute as tfjs-node's binding takes it (type: one of the binding's TF_ATTR_* kinds). */
export interface OpAttr {
  name: string;
  type: number;
  value: unknown;
}

/** What tfjs-node's binding says of an op's output. */
export interface TensorMetadata {
  id: number;
  shape: number[];
  dtype: number;
}

/** The parts of tfjs-node's NodeJSKernelBackend (and its binding) that this project uses: these kernels and graph replay (src/graph.ts). */
export interface NodeBackend {
  isUsingGpuDevice: boolean;
  incRef(dataId: tf.DataId): void;
  getInputTensorIds(tensors: tf.TensorInfo[]): number[];
  createOutputTensor(metadata: TensorMetadata): tf.TensorInfo;
  loadSavedModelMetaGraph(dir: string, tags: string): number;
  runSavedModel(session: number, inputs: tf.Tensor[], infos: { name: string }[], outputs: string[]): tf.Tensor[];
  binding: Record<
    | 'TF_FLOAT'
    | 'TF_INT32'
    | 'TF_BOOL'
    | 'TF_ATTR_STRING'
    | 'TF_ATTR_INT'
    | 'TF_ATTR_FLOAT'
    | 'TF_ATTR_BOOL'
    | 'TF_ATTR_TYPE'
    | 'TF_ATTR_SHAPE',
    number
  > & {
    createTensor(shape: number[], dtype: number, values: tf.TypedArray): number;
    deleteTensor(id: number): void;
    executeOp(name: string, attrs: OpAttr[], inputs: number[], outputs: number): TensorMetadata[];
  };
}

/** libtensorflow's dtype enum (the binding's name for it) by TensorFlow.js dtype, for float32, int32 and bool. */
export const DTYPE_ATTR: Partial<Record<string, 'TF_FLOAT' | 'TF_INT32' | 'TF_BOOL'>> = {
  float32: 'TF_FLOAT',
  int32: 'TF_INT32',
  bool: 'TF_BOOL',
};

/** Libtensorflow's Reshape with the shape handed over directly; undefined (the original kernel) for other dtypes. */
function reshape(x: tf.TensorInfo, target: number[], b: NodeBackend): tf.TensorInfo | undefined {
  const dtype = DTYPE_ATTR[x.dtype];
  if (!dtype) return undefined; // complex: the original kernel
  const shape = tf.util.inferFromImplicitShape(target, tf.util.sizeFromShape(x.shape));
  if (tf.util.arraysEqual(shape, x.shape)) return share(x, b);
  const { binding } = b;
  const shapeId = binding.createTensor([shape.length], binding.TF_INT32, Int32Array.from(shape));
  try {
    const attrs = [
      { name: 'T', type: binding.TF_ATTR_TYPE, value: binding[dtype] },
      { name: 'Tshape', type: binding.TF_ATTR_TYPE, value: binding.TF_INT32 },
    ];
    const [meta] = binding.executeOp('Reshape', attrs, [b.getInputTensorIds([x])[0]!, shapeId], 1);
    return b.createOutputTensor(meta);
  } finally {
    binding.deleteTensor(shapeId);
  }
}

/** BatchMatMulV3 (Eigen's kernel) for a float32 product small enough; undefined (BatchMatMulV2) otherwise. */
function smallProduct(
  inputs: tf.NamedTensorInfoMap,
  attrs: Record<string, unknown>,
  b: NodeBackend,
): tf.TensorInfo | undefined {
  const { a, b: y } = inputs as { a: tf.TensorInfo; b: tf.TensorInfo };
  if (a.dtype !== 'float32' || y.dtype !== 'float32') return undefined;
  const tA = attrs.transposeA === true;
  const tB = attrs.transposeB === true;
  const m = a.shape[a.shape.length - (tA ? 1 : 2)]!;
  const k = a.shape[a.shape.length - (tA ? 2 : 1)]!;
  const n = y.shape[y.shape.length - (tB ? 2 : 1)]!;
  const perItem = m * k * n;
  const batch = Math.max(tf.util.sizeFromShape(a.shape.slice(0, -2)), tf.util.sizeFromShape(y.shape.slice(0, -2)));
  if (perItem > 2 ** 20 || perItem * batch > 2 ** 22) return undefined;
  const { binding } = b;
  const float = { type: binding.TF_ATTR_TYPE, value: binding.TF_FLOAT };
  const attrList = [
    { name: 'Ta', ...float },
    { name: 'Tb', ...float },
    { name: 'Tout', ...float },
    { name: 'adj_x', type: binding.TF_ATTR_BOOL, value: tA },
    { name: 'adj_y', type: binding.TF_ATTR_BOOL, value: tB },
  ];
  const [meta] = binding.executeOp('BatchMatMulV3', attrList, b.getInputTensorIds([a, y]), 1);
  return b.createOutputTensor(meta);
}

let patched = false;

/**
 * Replaces the tensorflow backend's Cast, Reshape and BatchMatMul kernels and adds SigmoidGrad (call once
 * tfjs-node is loaded).
 */
export function patchNativeKernels(): void {
  if (patched) return;
  patched = replaceKernels<NodeBackend>('tensorflow', {
    Cast: { input: 'x', body: (x, a, b) => (x.dtype === a.dtype ? share(x, b) : undefined) },
    Reshape: { input: 'x', body: (x, a, b) => reshape(x, a.shape as number[], b) },
    BatchMatMul: { input: 'a', body: (_, a, b, inputs) => smallProduct(inputs, a, b) },
  });
  if (patched && !tf.getKernel('SigmoidGrad', 'tensorflow')) {
    tf.registerKernel({
      kernelName: 'SigmoidGrad',
      backendName: 'tensorflow',
      kernelFunc: ({ inputs, backend }) => {
        const b = backend as unknown as NodeBackend;
        const { y, dy } = inputs as { y: tf.TensorInfo; dy: tf.TensorInfo };
        const attrs = [{ name: 'T', type: b.binding.TF_ATTR_TYPE, value: b.binding.TF_FLOAT }];
        const [meta] = b.binding.executeOp('SigmoidGrad', attrs, b.getInputTensorIds([y, dy]), 1);
        return b.createOutputTensor(meta);
      },
    });
  }
}
