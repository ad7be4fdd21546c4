/** `until <job> <stage>`: the job stops after <stage> (the workflow's setUntil update validates it). */
import { jobHandle, setUntilUpdate } from '../../temporal/client';
import { type ConnectionFlags, connect, connectionOptions, type Register } from '../common';

export const register: Register = (program) => {
  connectionOptions(program.command('until <job> <stage>').description('stop the job after <stage> (e.g. 18s)')).action(
    async (job: string, stage: string, o: ConnectionFlags) => {
      const v = await jobHandle(await connect(o), job).executeUpdate(setUntilUpdate, { args: [stage] });
      process.stdout.write(`${job} will stop after stage ${v}\n`);
    },
  );
};
