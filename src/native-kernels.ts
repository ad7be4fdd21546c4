/**
 * Replacements for two tfjs-node 4.22 kernels that dispatch more than they need to (the
 * counterpart of wasm-kernels.ts for the `tensorflow` backend). A training step at width 1024
 * runs about 5300 kernels, most of them small, so tens of microseconds of dispatch each add up.
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
 */
import * as tf from '@tensorflow/tfjs';

/** The parts of tfjs-node's NodeJSKernelBackend that the kernels use. */
interface NodeBackend {
  incRef(dataId: tf.DataId): void;
  getInputTensorIds(tensors: tf.TensorInfo[]): number[];
  createOutputTensor(metadata: unknown): tf.TensorInfo;
  binding: {
    TF_INT32: number;
    TF_ATTR_TYPE: number;
    createTensor(shape: number[], dtype: number, values: Int32Array): number;
    deleteTensor(id: number): void;
    executeOp(name: string, attrs: unknown[], inputs: number[], outputs: number): unknown[];
  };
}

function share(x: tf.TensorInfo, backend: NodeBackend): tf.TensorInfo {
  backend.incRef(x.dataId);
  return { dataId: x.dataId, shape: x.shape, dtype: x.dtype };
}

const DTYPE_ATTR: Record<string, string> = { float32: 'TF_FLOAT', int32: 'TF_INT32', bool: 'TF_BOOL' };

let patched = false;

type KernelFunc = (args: Parameters<tf.KernelFunc>[0]) => ReturnType<tf.KernelFunc>;

/** Registers `body` as the tensorflow backend's kernel `name`; `original` is the kernel it replaces. */
function replace(
  name: string,
  body: (
    x: tf.TensorInfo,
    b: NodeBackend,
    args: Parameters<KernelFunc>[0],
    original: KernelFunc,
  ) => ReturnType<KernelFunc>,
): void {
  const original = tf.getKernel(name, 'tensorflow')!.kernelFunc as KernelFunc;
  tf.unregisterKernel(name, 'tensorflow');
  tf.registerKernel({
    kernelName: name,
    backendName: 'tensorflow',
    kernelFunc: (args) => body(args.inputs.x as tf.TensorInfo, args.backend as unknown as NodeBackend, args, original),
  });
}

/** Replaces the tensorflow backend's Cast and Reshape kernels (call once tfjs-node is loaded). */
export function patchNativeKernels(): void {
  if (patched || !tf.getKernel('Cast', 'tensorflow') || !tf.getKernel('Reshape', 'tensorflow')) return; // tfjs-node not loaded
  patched = true;
  replace('Cast', (x, b, args, original) => (x.dtype === args.attrs?.dtype ? share(x, b) : original(args)));
  replace('Reshape', (x, b, args, original) => {
    const dtype = DTYPE_ATTR[x.dtype];
    if (!dtype) return original(args); // strings, complex: the original kernel
    const shape = tf.util.inferFromImplicitShape(args.attrs?.shape as number[], tf.util.sizeFromShape(x.shape));
    if (tf.util.arraysEqual(shape, x.shape)) return share(x, b);
    const binding = b.binding as unknown as Record<string, number> & NodeBackend['binding'];
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
  });
}
