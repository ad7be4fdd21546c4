/** `plot <job>`: loss (and validation loss), gradient norm and learning rates of a job's metrics files, as .svg or .png. */
import * as fs from 'node:fs';
import * as path from 'node:path';
import { UserError } from '../../errors';
import { validateJobName } from '../../jobname';
import { plotJob } from '../../plot/plot';
import { jobStatus } from '../../temporal/status';
import { type ConnectionFlags, connect, connectionOptions, type Register } from '../common';

/** The job folder: from Temporal (the job's status), else ./runs/<job> when it exists. */
async function jobFolder(job: string, o: ConnectionFlags): Promise<string> {
  const local = path.resolve('runs', validateJobName(job));
  try {
    const client = await connect(o);
    try {
      const s = await jobStatus(client, job);
      if (s.jobDir) return s.jobDir;
    } finally {
      await client.connection.close();
    }
  } catch (e) {
    if (fs.existsSync(local)) return local;
    throw new UserError(`cannot find the folder of job ${job}: ${(e as Error).message.split('\n')[0]}`, {
      kind: 'InvalidInput',
      fix: 'pass --dir <dump_folder>/<job>, or --address of the Temporal server that ran it',
    });
  }
  return local;
}

/** The plot's title: every picture of a job says what it shows. */
export const plotTitle = (job: string): string => `${job}: loss, gradient norm and learning rates`;

export const register: Register = (program) => {
  const cmd = program
    .command('plot <job>')
    .description(
      'draw loss and validation loss (every stage on one time axis, boundaries marked), gradient norm and learning rates from the metrics files',
    );
  connectionOptions(cmd)
    .option('--out <file>', 'output picture, .svg or .png (default: <job>.svg)')
    .option('--dir <folder>', 'the job folder (dump_folder/<job>); default: asked from Temporal, else runs/<job>')
    .action(async (job: string, o: ConnectionFlags & { out?: string; dir?: string }) => {
      const dir = o.dir ? path.resolve(o.dir) : await jobFolder(job, o);
      const r = await plotJob(dir, o.out ?? `${job}.svg`, plotTitle(job));
      const val = r.validation > 0 ? `, ${r.validation} validation points` : '';
      process.stdout.write(`wrote ${r.file}: ${r.rows} steps of stages ${r.stages.join(', ')}${val}\n`);
    });
};
