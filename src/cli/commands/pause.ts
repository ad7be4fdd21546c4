/** `pause <job>`: the running shard checkpoints and stops; the job waits for `resume`. */
import { pauseSignal } from '../../temporal/client';
import { jobCommand, type Register } from '../common';

export const register: Register = (program) =>
  jobCommand(program, 'pause', 'pause a job: the running shard checkpoints and stops', (h) => h.signal(pauseSignal));
