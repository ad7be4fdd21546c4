/** `cancel <job>`: the running shard checkpoints, then the job stops (cancelled). */
import { jobCommand, type Register } from '../common';

export const register: Register = (program) =>
  jobCommand(program, 'cancel', 'cancel a job: the running shard checkpoints, then the job stops', async (h) => {
    await h.cancel();
  });
