/** `status <job>`: where a job is, once: a line per stage, or the status JSON with `--json`. */
import { formatEta, type JobStatus, jobStatus, type StageStatusLine, statusLine, valText } from '../../temporal/status';
import { type ConnectionFlags, connect, connectionOptions, type Register } from '../common';

/**
 * "  18s    420/1000      loss 0.1830  val loss 0.1650 at step 400  1.20 steps/s  ETA 8m";
 * a finished stage: "  3s      40/40 done loss 0.6607  val loss 0.9684 -> 0.4986".
 */
export function stageLine(st: StageStatusLine): string {
  const speed = st.stepsPerSecond ? `  ${st.stepsPerSecond.toFixed(2)} steps/s  ETA ${formatEta(st.etaSeconds)}` : '';
  const loss = st.loss === null ? '' : `loss ${st.loss.toFixed(4)}`;
  const val = valText(st);
  return `  ${st.stage.padEnd(4)} ${String(st.step).padStart(6)}/${st.totalSteps} ${st.done ? 'done' : '    '} ${loss}${val ? `  ${val}` : ''}${speed}`;
}

/** The text of `status` without --json. */
export function statusText(s: JobStatus): string {
  return [statusLine(s), ...s.stages.map(stageLine)].map((l) => `${l}\n`).join('');
}

export const register: Register = (program) => {
  connectionOptions(program.command('status <job>').description('print where a job is, once'))
    .option('--json', 'machine-readable output')
    .action(async (job: string, o: ConnectionFlags & { json?: boolean }) => {
      const s = await jobStatus(await connect(o), job);
      process.stdout.write(o.json ? `${JSON.stringify(s, null, 2)}\n` : statusText(s));
    });
};
