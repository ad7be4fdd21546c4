/** `worker`: runs a worker that trains shards of any job on its task queue, until SIGINT/SIGTERM. */
import { runWorker } from '../../temporal/worker';
import { collect, type ConnectionFlags, connectionOptions, type Register, taskQueueOption, toNumber } from '../common';
import { Option } from 'commander';

interface WorkerFlags extends ConnectionFlags {
  maxConcurrentActivities: number;
  metricsPort?: number;
  metricsHost: string;
  registerSearchAttributes: boolean;
  allowPath: string[];
  engineDir: string[];
}

export const register: Register = (program) => {
  connectionOptions(program.command('worker').description('run a worker: trains shards of any job on its task queue'))
    .addOption(taskQueueOption())
    .option('--max-concurrent-activities <n>', 'activities at once (one training shard each)', toNumber, 2)
    .addOption(
      new Option('--metrics-port <n>', "serve Prometheus metrics (Temporal's and ours) on this port, GET /metrics")
        .env('TTT_METRICS_PORT')
        .argParser(toNumber),
    )
    .option('--metrics-host <host>', 'interface of the metrics endpoint', '0.0.0.0')
    .option(
      '--allow-path <dir>',
      'folder that job inputs may read and write (repeatable; default: TTT_ALLOW_PATHS, else the working directory; configs/ is always readable)',
      collect,
      [],
    )
    .option(
      '--engine-dir <dir>',
      'folder of engine presets (<name>.toml), searched before the package\'s configs/engine/ (repeatable; see README, "Engines")',
      collect,
      [],
    )
    .option(
      '--no-register-search-attributes',
      'do not create missing job search attributes (jobs then run without them, after one warning)',
    )
    .action(async (o: WorkerFlags) => {
      const ac = new AbortController();
      for (const sig of ['SIGINT', 'SIGTERM'] as const) process.once(sig, () => ac.abort());
      await runWorker({
        address: o.address,
        namespace: o.namespace,
        taskQueue: o.taskQueue,
        maxConcurrentActivities: o.maxConcurrentActivities,
        metricsPort: o.metricsPort,
        metricsHost: o.metricsHost,
        registerSearchAttributes: o.registerSearchAttributes,
        allowPaths: o.allowPath,
        engineDirs: o.engineDir,
        signal: ac.signal,
      });
    });
};
