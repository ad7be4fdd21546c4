/** `start <job>`: starts a job (or attaches to the running job of that name); `--wait` prints its result. */
import type { CurriculumResult } from '../../shared/types';
import { startJob } from '../../temporal/client';
import {
  type ConnectionFlags,
  connect,
  connectionOptions,
  type JobFlags,
  jobInput,
  jobOptions,
  printResult,
  type Register,
  taskQueueOption,
} from '../common';

interface StartFlags extends ConnectionFlags, JobFlags {
  wait?: boolean;
}

export const register: Register = (program, ctx) => {
  const cmd = program.command('start <job>').description('start a job (or attach to the running job of that name)');
  jobOptions(connectionOptions(cmd), 'last stage to run, e.g. 18s')
    .addOption(taskQueueOption())
    .option('--wait', 'wait for the result and print it')
    .action(async (job: string, o: StartFlags) => {
      const client = await connect(o);
      const handle = await startJob(client, jobInput(job, o, ctx.overrides), { taskQueue: o.taskQueue });
      process.stdout.write(`job ${handle.workflowId} running (run ${(await handle.describe()).runId})\n`);
      if (o.wait) printResult((await handle.result()) as CurriculumResult);
    });
};
