/**
 * The mechanism behind wasm-kernels.ts and native-kernels.ts: replacing some of a TensorFlow.js
 * backend's kernels with bodies that may defer to the kernel they replace.
 */
import * as tf from '@tensorflow/tfjs';

export type Attrs = Record<string, unknown>;

/**
 * A replacement kernel body: the numeric input named `input` (and all inputs, by name); returns
 * undefined to defer to the original kernel.
 */
export type KernelBody<B> = (
  x: tf.TensorInfo,
  attrs: Attrs,
  backend: B,
  inputs: tf.NamedTensorInfoMap,
) => tf.TensorInfo | tf.TensorInfo[] | undefined;

/** The same data under a new tensor, with one more reference (the data is immutable). */
export function share(x: tf.TensorInfo, backend: { incRef(dataId: tf.DataId): void }): tf.TensorInfo {
  backend.incRef(x.dataId);
  return { dataId: x.dataId, shape: x.shape, dtype: x.dtype };
}

/**
 * Replaces `backendName`'s kernels named in `bodies` (input: the name of the input the body
 * gets); string inputs and a body's undefined keep the original. Returns false, and replaces
 * nothing, if any of them is not registered (the backend is not loaded).
 */
export function replaceKernels<B>(
  backendName: string,
  bodies: Record<string, { input: string; body: KernelBody<B> }>,
): boolean {
  const names = Object.keys(bodies);
  const orig = new Map(names.map((k) => [k, tf.getKernel(k, backendName)]));
  if (names.some((k) => !orig.get(k))) return false;
  for (const k of names) {
    const { input, body } = bodies[k]!;
    const original = orig.get(k)!.kernelFunc;
    tf.unregisterKernel(k, backendName);
    tf.registerKernel({
      kernelName: k,
      backendName,
      kernelFunc: (args) => {
        const x = args.inputs[input] as tf.TensorInfo;
        return (
          (x.dtype === 'string' ? undefined : body(x, (args.attrs ?? {}) as Attrs, args.backend as B, args.inputs)) ??
          original(args)
        );
      },
    });
  }
  return true;
}
