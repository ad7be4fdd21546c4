/**
 * The backend a numerics test file runs on. Test files that check the math (ttt.test.ts) run on
 * wasm, installed everywhere; their native-*.test.ts twins run the same tests on the tensorflow
 * backend when `npm run setup` installed it, and are skipped (saying why) when it did not, except
 * where TTT_REQUIRE_NATIVE=1 (CI): there a missing native backend fails them.
 */
import * as path from 'node:path';
import { type BackendChoice, NATIVE_PACKAGES, tf } from '../src/backend';
import { modelDims } from '../src/config/dims';
import { loadStageConfig } from '../src/config/load';
import type { StageConfig } from '../src/config/schema';
import { makeBatch, openDataSource } from '../src/data/batch';
import { disposeRopeTables, type Params, ropeForModel } from '../src/model/dit';
import { initialParams } from '../src/model/params';
import { lossAndGradients } from '../src/train/step';
import { ROOT } from './helpers';

let backendUnderTest: BackendChoice = 'wasm';

export function testBackend(): BackendChoice {
  return backendUnderTest;
}

export function useTestBackend(b: BackendChoice): void {
  backendUnderTest = b;
}

/** False when a native package is installed; else why native tests are skipped (throws where it is required). */
export function nativeSkip(): string | false {
  for (const p of NATIVE_PACKAGES) {
    try {
      require.resolve(p);
      return false;
    } catch {
      // not installed
    }
  }
  const why = 'the native tensorflow backend is not installed (npm run setup installs it; see its log line)';
  if (process.env.TTT_REQUIRE_NATIVE === '1') throw new Error(`TTT_REQUIRE_NATIVE=1 but ${why}`);
  return why;
}

/** ‖a − b‖ / ‖b‖ (0 when both are zero): how the native tests compare two computations of a tensor. */
export function relativeError(a: Float32Array, b: Float32Array): number {
  let num = 0;
  let den = 0;
  for (let i = 0; i < b.length; i++) {
    num += (a[i]! - b[i]!) ** 2;
    den += b[i]! ** 2;
  }
  return den === 0 ? Math.sqrt(num) : Math.sqrt(num / den);
}

/**
 * The tiny 3 s stage's first micro-batch on the backend in use, from its seed's weights: `step()`
 * is training's own loss and gradients of it (lossAndGradients: on tensorflow, a graph).
 */
export function tinyTrainingStep(): {
  config: StageConfig;
  names: string[];
  step(): { value: tf.Scalar; grads: tf.Tensor[] };
  dispose(): void;
} {
  const c = loadStageConfig(path.join(ROOT, 'configs/train/tiny/3s.toml'), {}).config;
  const d = modelDims(c);
  const P: Params = initialParams(d, c.training.seed);
  const names = Object.keys(P);
  const rope = ropeForModel(d);
  const gbs = c.training.global_batch_size;
  const batch = makeBatch(openDataSource(c, d), d, c.training.seed, 1, gbs, 0, gbs);
  return {
    config: c,
    names,
    step: () =>
      lossAndGradients(
        { frozen: {}, dims: d, rope },
        names,
        names.map((n) => P[n]!),
        { video: batch.noisy, text: batch.text, timesteps: batch.timesteps, target: batch.target },
      ),
    dispose() {
      tf.dispose([...Object.values(P), batch.noisy, batch.target, batch.text, batch.timesteps]);
      disposeRopeTables(rope);
    },
  };
}
