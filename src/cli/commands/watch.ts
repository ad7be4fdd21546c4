/** `watch <job>`: live progress bars, one per stage, until the job ends; then its result. */
import { statusLine } from '../../temporal/status';
import { watchJob } from '../../temporal/watch';
import { type ConnectionFlags, connect, connectionOptions, printResult, type Register, toNumber } from '../common';

export const register: Register = (program) => {
  connectionOptions(program.command('watch <job>').description('live progress bars, one per stage, until the job ends'))
    .option('--no-tty', 'plain lines instead of progress bars')
    .option('--interval <ms>', 'poll interval', toNumber, 1000)
    .action(async (job: string, o: ConnectionFlags & { tty: boolean; interval: number }) => {
      const client = await connect(o);
      const s = await watchJob(client, job, { tty: o.tty === false ? false : undefined, intervalMs: o.interval });
      process.stdout.write(`${statusLine(s)}\n`);
      if (s.result) printResult(s.result);
    });
};
