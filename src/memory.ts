/**
 * Peak TensorFlow.js tensor memory during a function. tf.profile() computes the same figure but
 * overflows the call stack on long runs (Math.max over every kernel), so this wraps the
 * engine's tensor tracking instead.
 */
import { tf } from './backend';

interface TensorInfoEntry {
  backend: unknown;
  bytes: number;
}

interface EngineInternals {
  state: { tensorInfo: WeakMap<object, TensorInfoEntry> };
  trackTensor: (a: { dataId: object }, backend?: unknown) => unknown;
  removeDataId: (dataId: object, backend: unknown) => unknown;
}

/**
 * Peak bytes of distinct tensor buffers during `fn`, above those alive when it starts. Views
 * that share a buffer (reshape, and on wasm clone and same-dtype cast) count once; the engine's
 * own numBytes counts every tensor, so it overstates memory.
 */
export async function peakBytes<T>(fn: () => T | Promise<T>): Promise<{ result: T; peakBytes: number }> {
  const engine = tf.engine() as unknown as EngineInternals;
  const info = engine.state.tensorInfo; // a WeakMap: the count starts at 0 and may go below it
  const { trackTensor, removeDataId } = engine;
  let live = 0;
  let peak = 0;
  engine.trackTensor = function (this: EngineInternals, a, backend) {
    const isNew = !info.has(a.dataId);
    const r = trackTensor.call(this, a, backend);
    if (isNew && info.has(a.dataId)) {
      live += info.get(a.dataId)!.bytes;
      if (live > peak) peak = live;
    }
    return r;
  };
  engine.removeDataId = function (this: EngineInternals, dataId, backend) {
    const e = info.get(dataId);
    const r = removeDataId.call(this, dataId, backend);
    if (e && !info.has(dataId)) live -= e.bytes;
    return r;
  };
  try {
    const result = await fn();
    return { result, peakBytes: peak };
  } finally {
    engine.trackTensor = trackTensor;
    engine.removeDataId = removeDataId;
  }
}
