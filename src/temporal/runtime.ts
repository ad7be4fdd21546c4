/**
 * Routes the Temporal SDK's own logs (worker, bundler, core) through pino. SDK messages below
 * WARN are dropped unless TTT_LOG_LEVEL is debug/trace: they are useful when debugging the SDK,
 * noise when running jobs.
 */
import { Runtime, type LogLevel, type LogMetadata } from '@temporalio/worker';
import { logger } from '../log';

let installed = false;

export function installTemporalRuntime(): void {
  if (installed) return;
  installed = true;
  const verbose = ['debug', 'trace'].includes(process.env.TTT_LOG_LEVEL ?? '');
  const sdk = logger.child({ component: 'temporal-sdk' });
  const order: Record<LogLevel, number> = { TRACE: 0, DEBUG: 1, INFO: 2, WARN: 3, ERROR: 4 };
  const min = verbose ? 'DEBUG' : 'WARN';
  const log = (level: LogLevel, message: string, meta?: LogMetadata): void => {
    if (order[level] < order[min]) return;
    const fn = level === 'ERROR' ? 'error' : level === 'WARN' ? 'warn' : level === 'INFO' ? 'info' : level === 'DEBUG' ? 'debug' : 'trace';
    sdk[fn](meta ?? {}, message);
  };
  Runtime.install({
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
