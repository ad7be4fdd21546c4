/**
 * Installs the Temporal SDK runtime of this process: the SDK's own logs (worker, bundler, core)
 * go through pino, and, when asked, metrics are served for Prometheus on `metricsAddress`
 * (GET /metrics): Temporal's own (temporal_*) and ours (ttt_*, src/metrics.ts), which are
 * created on the same runtime meter. SDK messages below WARN are dropped unless TTT_LOG_LEVEL
 * is debug/trace: they are useful when debugging the SDK, noise when running jobs.
 */
import { Runtime, type LogLevel, type LogMetadata } from '@temporalio/worker';
import { logger } from '../log';
import { HISTOGRAM_BUCKETS } from './metrics';

let installed: { metricsAddress: string | null } | undefined;

export interface RuntimeSetup {
  /** host:port of the Prometheus endpoint, e.g. "0.0.0.0:9464"; none when absent. */
  metricsAddress?: string;
}

/** Installs the runtime once per process; a second call must not ask for a different metrics endpoint. */
export function installTemporalRuntime(setup: RuntimeSetup = {}): void {
  const metricsAddress = setup.metricsAddress ?? null;
  if (installed) {
    if (metricsAddress !== null && installed.metricsAddress !== metricsAddress) {
      throw new Error(
        `the Temporal runtime of this process is already installed ${installed.metricsAddress ? `with metrics on ${installed.metricsAddress}` : 'without metrics'}; start the worker with --metrics-port in its own process`,
      );
    }
    return;
  }
  installed = { metricsAddress };
  const verbose = ['debug', 'trace'].includes(process.env.TTT_LOG_LEVEL ?? '');
  const sdk = logger.child({ component: 'temporal-sdk' });
  const order: Record<LogLevel, number> = { TRACE: 0, DEBUG: 1, INFO: 2, WARN: 3, ERROR: 4 };
  const min = verbose ? 'DEBUG' : 'WARN';
  const log = (level: LogLevel, message: string, meta?: LogMetadata): void => {
    if (order[level] < order[min]) return;
    const fn =
      level === 'ERROR'
        ? 'error'
        : level === 'WARN'
          ? 'warn'
          : level === 'INFO'
            ? 'info'
            : level === 'DEBUG'
              ? 'debug'
              : 'trace';
    sdk[fn](meta ?? {}, message);
  };
  Runtime.install({
    ...(metricsAddress
      ? {
          telemetryOptions: {
            metrics: {
              prometheus: {
                bindAddress: metricsAddress,
                countersTotalSuffix: true,
                useSecondsForDurations: true,
                histogramBucketOverrides: HISTOGRAM_BUCKETS,
              },
            },
          },
        }
      : {}),
    logger: {
      log,
      trace: (m, meta) => log('TRACE', m, meta),
      debug: (m, meta) => log('DEBUG', m, meta),
      info: (m, meta) => log('INFO', m, meta),
      warn: (m, meta) => log('WARN', m, meta),
      error: (m, meta) => log('ERROR', m, meta),
    },
  });
}
