/**
 * `demo`: the main job, a tiny five-stage curriculum on a local Temporal dev server (started if
 * none answers and TEMPORAL_ADDRESS names none) with an in-process worker; progress bars, the
 * result table and a plot.
 */
import * as path from 'node:path';
import type { Client } from '@temporalio/client';
import { logger } from '../../log';
import { plotJob } from '../../plot/plot';
import type { CurriculumResult } from '../../shared/types';
import { connectClient, startJob } from '../../temporal/client';
import { temporalTarget } from '../../temporal/connection';
import { type DevServer, portOpen, startDevServer } from '../../temporal/devserver';
import { jobStatus } from '../../temporal/status';
import { watchJob } from '../../temporal/watch';
import { createWorker } from '../../temporal/worker';
import { type CliContext, type JobFlags, jobInput, jobOptions, printResult, type Register } from '../common';
import { plotTitle } from './plot';

interface DemoFlags extends JobFlags {
  job?: string;
}

/** The server of TEMPORAL_ADDRESS, else the one on localhost:7233, else a dev server started here. */
async function ensureServer(): Promise<{ address: string; server: DevServer | null }> {
  const target = temporalTarget();
  if (target.external) return { address: target.address, server: null };
  if (await portOpen(7233)) return { address: 'localhost:7233', server: null };
  process.stderr.write(
    'Starting a local Temporal dev server (history in .temporal/dev.sqlite, UI on http://localhost:8233)...\n',
  );
  const server = await startDevServer({ port: 7233, uiPort: 8233, dbFile: path.resolve('.temporal', 'dev.sqlite') });
  return { address: server.address, server };
}

/** "tiny-demo-20250101-120000" */
const defaultJobName = (): string =>
  `tiny-demo-${new Date().toISOString().replace(/[-:]/g, '').replace(/\..*/, '').replace('T', '-')}`;

/** Starts the job, watches it to the end, prints its result table and plot. */
async function runDemoJob(
  client: Client,
  o: DemoFlags,
  ctx: CliContext,
  at: { address: string; taskQueue: string },
): Promise<void> {
  const job = o.job ?? defaultJobName();
  const handle = await startJob(client, jobInput(job, o, ctx.overrides), { taskQueue: at.taskQueue });
  process.stdout.write(`Started job ${job} on ${at.address} (task queue ${at.taskQueue}).\n`);
  if (!temporalTarget().external)
    process.stdout.write(`Temporal UI: http://localhost:8233/namespaces/default/workflows/${job}\n`);
  await watchJob(client, job);
  printResult((await handle.result()) as CurriculumResult);
  const st = await jobStatus(client, job);
  if (st.jobDir) {
    const pic = await plotJob(st.jobDir, path.join(st.jobDir, 'plot.svg'), plotTitle(job));
    process.stdout.write(
      `\nLoss, gradient norm and learning rates: ${path.relative(process.cwd(), pic.file) || pic.file}\n`,
    );
  }
}

async function demo(o: DemoFlags, ctx: CliContext): Promise<void> {
  // The progress display is the demo's output; per-step logs (also of the training children) only on request.
  if (process.env.TTT_LOG_LEVEL === undefined) {
    process.env.TTT_LOG_LEVEL = 'warn';
    logger.level = 'warn';
  }
  const { address, server } = await ensureServer();
  const taskQueue = temporalTarget().taskQueue;
  const { worker, connection } = await createWorker({ address, taskQueue });
  const running = worker.run();
  try {
    await runDemoJob(await connectClient({ address }), o, ctx, { address, taskQueue });
  } finally {
    worker.shutdown();
    await running;
    await connection.close();
    if (server) await server.stop();
  }
}

export const register: Register = (program, ctx) => {
  const cmd = program
    .command('demo')
    .description('the main job: a tiny five-stage curriculum on a local Temporal dev server with an in-process worker')
    .option('--job <name>', 'job name (default: tiny-demo-<time>)');
  jobOptions(cmd, 'last stage to run').action((o: DemoFlags) => demo(o, ctx));
};
