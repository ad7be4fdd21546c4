/**
 * The TensorFlow.js namespace in use and backend selection.
 *
 * `auto` tries, in order: tfjs-node-gpu (CUDA), tfjs-node (native CPU), wasm, then the pure
 * JavaScript cpu backend. The native packages are optional peer dependencies: their install
 * downloads libtensorflow, which is not possible everywhere, so they are loaded only if present.
 */
import * as tf from '@tensorflow/tfjs';
import { logger } from './log';
import { patchWasmKernels } from './wasm-kernels';

export { tf };

export type BackendChoice = 'auto' | 'tensorflow' | 'wasm' | 'cpu';

let initialised: string | undefined;

function tryRequire(name: string): boolean {
  try {
    require(name);
    return true;
  } catch (e) {
    logger.debug({ module: name, err: (e as Error).message }, 'optional backend module not available');
    return false;
  }
}

async function trySet(name: string): Promise<boolean> {
  try {
    return await tf.setBackend(name);
  } catch (e) {
    logger.debug({ backend: name, err: (e as Error).message }, 'backend failed to initialise');
    return false;
  }
}

/**
 * Selects and initialises a backend; returns the name of the backend in use
 * ("tensorflow", "wasm" or "cpu"). Asking for an unavailable backend explicitly is an error.
 */
export async function initBackend(choice: BackendChoice = 'auto'): Promise<string> {
  if (initialised !== undefined && (choice === 'auto' || choice === initialised)) return initialised;
  const order: BackendChoice[] = choice === 'auto' ? ['tensorflow', 'wasm', 'cpu'] : [choice];
  for (const b of order) {
    if (b === 'tensorflow') {
      if (!(tryRequire('@tensorflow/tfjs-node-gpu') || tryRequire('@tensorflow/tfjs-node'))) continue;
    }
    if (b === 'wasm') {
      if (!tryRequire('@tensorflow/tfjs-backend-wasm')) continue;
      patchWasmKernels();
    }
    if (await trySet(b)) {
      await tf.ready();
      initialised = tf.getBackend();
      logger.debug({ backend: initialised }, 'TensorFlow.js backend ready');
      return initialised;
    }
  }
  throw new Error(
    choice === 'tensorflow'
      ? 'backend "tensorflow" is not available: install @tensorflow/tfjs-node-gpu (CUDA) or @tensorflow/tfjs-node, or use runtime.backend = "auto"'
      : `backend "${choice}" could not be initialised`,
  );
}
