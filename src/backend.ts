/**
 * The TensorFlow.js namespace in use, backend selection, and the one description of the backend
 * in use (logs, shard results, status, metrics).
 *
 * `auto` tries, in order: tfjs-node-gpu (libtensorflow with CUDA), tfjs-node (libtensorflow on
 * every CPU core), wasm, then the pure JavaScript cpu backend. The native packages are not npm
 * dependencies: their own install scripts download from outside the registries, so
 * `scripts/ensure-tfjs-node.sh` (run by `npm run setup`) installs them from PyPI's TensorFlow
 * wheels; they are loaded only if present.
 */
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as tf from '@tensorflow/tfjs';
import { logger } from './log';
import { patchNativeKernels } from './native-kernels';
import { patchWasmKernels } from './wasm-kernels';

export { tf };

export type BackendChoice = 'auto' | 'tensorflow' | 'wasm' | 'cpu';

/** The native packages, in the order `auto` and `tensorflow` try them. */
export const NATIVE_PACKAGES = ['@tensorflow/tfjs-node-gpu', '@tensorflow/tfjs-node'] as const;

let initialised: string | undefined;
let nativePackage: string | undefined;

function tryRequire(name: string): boolean {
  try {
    require(name);
    return true;
  } catch (e) {
    logger.debug({ module: name, err: (e as Error).message }, 'optional backend module not available');
    return false;
  }
}

/**
 * libtensorflow settings, read from the environment when it loads: quiet banners (its
 * informational lines would go to the training child's stderr), and the CPU thread pools. A
 * value the user set is kept. Its CPU kernels need nothing for bit-exact results between runs
 * with the same thread count (tested: test/unit/native-resume.test.ts, test/integration/native-chaos.test.ts).
 */
function nativeEnvironment(): void {
  process.env.TF_CPP_MIN_LOG_LEVEL ??= '2';
}

function requireNative(): boolean {
  if (nativePackage) return true;
  nativeEnvironment();
  for (const p of NATIVE_PACKAGES) {
    if (tryRequire(p)) {
      nativePackage = p;
      patchNativeKernels();
      return true;
    }
  }
  return false;
}

/** The native package loaded (tfjs-node or tfjs-node-gpu); an error if none is. */
export function nativePackageName(): string {
  if (!nativePackage) throw new Error('no native TensorFlow.js package is loaded');
  return nativePackage;
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
  if (initialised !== undefined && (choice === 'auto' || choice === initialised)) {
    if (tf.getBackend() !== initialised) await tf.setBackend(initialised);
    return initialised;
  }
  const order: BackendChoice[] = choice === 'auto' ? ['tensorflow', 'wasm', 'cpu'] : [choice];
  for (const b of order) {
    if (b === 'tensorflow' && !requireNative()) continue;
    if (b === 'wasm') {
      if (!tryRequire('@tensorflow/tfjs-backend-wasm')) continue;
      patchWasmKernels();
    }
    if (await trySet(b)) {
      await tf.ready();
      initialised = tf.getBackend();
      logger.debug({ backend: describeBackend() }, 'TensorFlow.js backend ready');
      return initialised;
    }
  }
  throw new Error(
    choice === 'tensorflow'
      ? 'backend "tensorflow" is not available: run `npm run setup` (installs @tensorflow/tfjs-node from PyPI\'s TensorFlow wheel; `npm run setup -- --gpu` for tfjs-node-gpu), or use runtime.backend = "auto"'
      : `backend "${choice}" could not be initialised`,
  );
}

/** The backend in use, as logs, shard results, `status --json` and metric labels show it. */
export interface BackendInfo {
  /** "tensorflow", "wasm" or "cpu" (TensorFlow.js's backend name). */
  name: string;
  /** Where its kernels run. */
  device: 'cpu' | 'gpu';
  /** The processor or GPU model, e.g. "Intel(R) Xeon(R) Processor", "NVIDIA H100 80GB HBM3". */
  deviceName: string;
  /** Threads of its CPU kernels (wasm and cpu: 1); null on a GPU. */
  threads: number | null;
  /** The npm package behind "tensorflow" (tfjs-node or tfjs-node-gpu); null otherwise. */
  package: string | null;
  /** The device in one line: "gpu: NVIDIA H100 80GB HBM3", "cpu: Intel(R) Xeon(R) Processor, 2 threads". */
  deviceText: string;
}

/** The model of the first NVIDIA GPU the driver lists (/proc/driver/nvidia), or null. */
function nvidiaGpuName(): string | null {
  try {
    const dir = '/proc/driver/nvidia/gpus';
    for (const bus of fs.readdirSync(dir).sort()) {
      const m = /^Model:\s*(.+)$/m.exec(fs.readFileSync(`${dir}/${bus}/information`, 'utf8'));
      if (m) return m[1]!.trim();
    }
  } catch {
    // no NVIDIA driver
  }
  return null;
}

/** Describes the backend in use (call after initBackend). */
export function describeBackend(): BackendInfo {
  const name = tf.getBackend();
  const cpuName = os.cpus()[0]?.model.trim() || os.arch();
  if (name === 'tensorflow') {
    const gpu = (tf.backend() as unknown as { isUsingGpuDevice?: boolean }).isUsingGpuDevice === true;
    if (gpu) {
      const deviceName = nvidiaGpuName() ?? 'GPU';
      const pkg = nativePackage ?? null;
      return { name, device: 'gpu', deviceName, threads: null, package: pkg, deviceText: `gpu: ${deviceName}` };
    }
    const threads = Number(process.env.TF_NUM_INTRAOP_THREADS) || os.availableParallelism();
    return {
      name,
      device: 'cpu',
      deviceName: cpuName,
      threads,
      package: nativePackage ?? null,
      deviceText: `cpu: ${cpuName}, ${threads} thread${threads === 1 ? '' : 's'}`,
    };
  }
  return {
    name,
    device: 'cpu',
    deviceName: cpuName,
    threads: 1,
    package: null,
    deviceText: `cpu: ${cpuName}, 1 thread`,
  };
}
