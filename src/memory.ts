/**
 * Peak TensorFlow.js tensor memory during a function. tf.profile() computes the same figure but
 * overflows the call stack on long runs (Math.max over every kernel), so this wraps the
 * engine's tensor tracking instead.
 */
import { tf } from './backend';

interface EngineInternals {
  state: { numBytes: number };
  trackTensor: (...args: unknown[]) => unknown;
}

export async function peakBytes<T>(fn: () => T | Promise<T>): Promise<{ result: T; peakBytes: number; startBytes: number }> {
  const engine = tf.engine() as unknown as EngineInternals;
  const original = engine.trackTensor;
  const startBytes = engine.state.numBytes;
  let peak = startBytes;
  engine.trackTensor = function (this: EngineInternals, ...args: unknown[]) {
    const r = original.apply(this, args);
    if (this.state.numBytes > peak) peak = this.state.numBytes;
    return r;
  };
  try {
    const result = await fn();
    return { result, peakBytes: peak - startBytes, startBytes };
  } finally {
    engine.trackTensor = original;
  }
}
