/** Runs a Worker with the plugin until it is shut down (SIGINT/SIGTERM) or `signal` aborts. */
import { NativeConnection, Worker } from '@temporalio/worker';
import { temporalTarget, type TemporalTarget } from './connection';
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
  signal?: AbortSignal;
}

export async function createWorker(
  opts: WorkerOptions = {},
): Promise<{ worker: Worker; connection: NativeConnection }> {
  installTemporalRuntime(
    opts.metricsPort !== undefined ? { metricsAddress: `${opts.metricsHost ?? '0.0.0.0'}:${opts.metricsPort}` } : {},
  );
  const target = temporalTarget(opts);
  const connection = await NativeConnection.connect({ address: target.address });
  try {
    await ensureSearchAttributes(connection.operatorService, target.namespace, {
      register: opts.registerSearchAttributes !== false,
    });
  } catch (e) {
    await connection.close();
    throw e;
  }
  const worker = await Worker.create({
    connection,
    namespace: target.namespace,
    taskQueue: target.taskQueue,
    plugins: [new TttCurriculumPlugin()],
    maxConcurrentActivityTaskExecutions: opts.maxConcurrentActivities ?? 2,
    // A shard checkpoints when asked to stop; give it time on shutdown.
    shutdownGraceTime: '60s',
    // Heartbeats carry live step/loss for `status` and `watch`; send them often (they are tiny).
    maxHeartbeatThrottleInterval: '2s',
    defaultHeartbeatThrottleInterval: '2s',
  });
  return { worker, connection };
}

export async function runWorker(opts: WorkerOptions = {}): Promise<void> {
  const target = temporalTarget(opts);
  const { worker, connection } = await createWorker(opts);
  logger.info(
    {
      address: target.address,
      namespace: target.namespace,
      taskQueue: target.taskQueue,
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
