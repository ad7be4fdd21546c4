/** `resume <job>`: a paused job goes on from its last checkpoint. */
import { resumeSignal } from '../../temporal/client';
import { jobCommand, type Register } from '../common';

export const register: Register = (program) =>
  jobCommand(program, 'resume', 'resume a paused job', (h) => h.signal(resumeSignal));
