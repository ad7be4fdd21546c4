/** Runs a Worker with the plugin until it is shut down (SIGINT/SIGTERM) or `signal` aborts. */
import { NativeConnection, Worker } from '@temporalio/worker';
import { type AllowedRoots, allowedRoots, describeRoots } from '../allowed-paths';
import { EngineCatalog } from '../engine/preset';
import { type ConnectionSettings, connectionSettings, openConnection, type TemporalTarget } from './connection';
import { logger } from '../log';
import { TttCurriculumPlugin } from './plugin';
import { installTemporalRuntime } from './runtime';
import { ensureSearchAttributes } from './search-attributes';

export interface WorkerOptions extends Partial<TemporalTarget> {
  /** Concurrent activity executions (training shards and bookkeeping); default 2. */
  maxConcurrentActivities?: number;
  /** Serve Prometheus metrics (Temporal's and ours) on this port, GET /metrics. */
  metricsPort?: number;
  /** Interface of the metrics endpoint (default 0.0.0.0: reachable by a Prometheus server). */
  metricsHost?: string;
  /** Create missing job search attributes where the server allows it (default true). */
  registerSearchAttributes?: boolean;
  /**
   * The folders that job inputs may read and write (`worker --allow-path`); default: the folders
   * in TTT_ALLOW_PATHS, else the working directory. The package's configs/ is always readable.
   */
  allowPaths?: readonly string[];
  /**
   * Folders of engine presets (`worker --engine-dir`, repeatable), searched in this order before the
   * package's configs/engine/. They are the worker's: a job only names a preset.
   */
  engineDirs?: readonly string[];
  signal?: AbortSignal;
}

export interface CreatedWorker {
  worker: Worker;
  connection: NativeConnection;
  /** Where and how it connected; `settings.summary` is the part without secrets. */
  settings: ConnectionSettings;
  allowed: AllowedRoots;
  engines: EngineCatalog;
}

export async function createWorker(opts: WorkerOptions = {}): Promise<CreatedWorker> {
  const allowed = allowedRoots({ allowPaths: opts.allowPaths });
  const engines = EngineCatalog.forWorker(opts.engineDirs);
  const settings = connectionSettings(opts);
  installTemporalRuntime(
    opts.metricsPort !== undefined ? { metricsAddress: `${opts.metricsHost ?? '0.0.0.0'}:${opts.metricsPort}` } : {},
  );
  const connection = await openConnection(settings, (o) => NativeConnection.connect(o));
  try {
    await ensureSearchAttributes(connection.operatorService, settings.namespace, {
      register: opts.registerSearchAttributes !== false,
    });
  } catch (e) {
    await connection.close();
    throw e;
  }
  const worker = await Worker.create({
    connection,
    namespace: settings.namespace,
    taskQueue: settings.taskQueue,
    plugins: [new TttCurriculumPlugin({ allowed, engines })],
    maxConcurrentActivityTaskExecutions: opts.maxConcurrentActivities ?? 2,
    // A shard checkpoints when asked to stop; give it time on shutdown.
    shutdownGraceTime: '60s',
    // Heartbeats carry live step/loss for `status` and `watch`; send them often (they are tiny).
    maxHeartbeatThrottleInterval: '2s',
    defaultHeartbeatThrottleInterval: '2s',
  });
  return { worker, connection, settings, allowed, engines };
}

export async function runWorker(opts: WorkerOptions = {}): Promise<void> {
  const { worker, connection, settings, allowed, engines } = await createWorker(opts);
  logger.info(
    {
      ...settings.summary,
      taskQueue: settings.taskQueue,
      allowedPaths: describeRoots(allowed),
      engines: engines.names().join(', '),
      engineDirs: engines.dirs.join(', '),
      ...(opts.metricsPort !== undefined
        ? { metrics: `http://${opts.metricsHost ?? '0.0.0.0'}:${opts.metricsPort}/metrics` }
        : {}),
    },
    'worker started',
  );
  const stop = (): void => worker.shutdown();
  opts.signal?.addEventListener('abort', stop, { once: true });
  try {
    await worker.run();
  } finally {
    opts.signal?.removeEventListener('abort', stop);
    await connection.close();
    logger.info('worker stopped');
  }
}
