/**
 * Slurm's client commands, run without a shell: submit (sbatch), find a stage's live job by
 * name (squeue), read a job's state (scontrol), signal or cancel it (scancel). A command Slurm
 * refuses for good (an unknown partition, a missing sbatch) is a UserError of kind SlurmError with
 * Slurm's own message and the fix; a controller that does not answer is a retryable error.
 */
import { execFile } from 'node:child_process';
import { UserError } from '../../errors';

const COMMAND_TIMEOUT_MS = 60_000;

/** The controller did not answer, or answered "try again": retried. */
export class SlurmUnavailableError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'SlurmUnavailableError';
  }
}

/** Slurm's own texts for a controller that is down, busy or unreachable. */
const TRANSIENT =
  /Unable to contact slurm controller|Socket timed out|temporarily unable|temporarily unavailable|try again|Connection refused|Connection timed out|Zero Bytes were transmitted|Communication connection failure|standby mode|Transport endpoint/i;

/** Job states in which a job still runs or may run again; anything else has ended. */
export const LIVE_STATES = new Set([
  'PENDING',
  'CONFIGURING',
  'RUNNING',
  'COMPLETING',
  'SUSPENDED',
  'STOPPED',
  'RESIZING',
  'SIGNALING',
  'STAGE_OUT',
  'REQUEUED',
  'REQUEUE_FED',
  'REQUEUE_HOLD',
  'REQUEUE_CRON',
]);

interface Run {
  stdout: string;
  stderr: string;
}

/** Runs a Slurm command; `env` is laid over this process's environment (undefined removes a key). */
function run(cmd: string, args: string[], env?: NodeJS.ProcessEnv): Promise<Run> {
  const options = { timeout: COMMAND_TIMEOUT_MS, encoding: 'utf8' as const, env: { ...process.env, ...env } };
  return new Promise((resolve, reject) => {
    execFile(cmd, args, options, (err, stdout, stderr) => {
      if (!err) return resolve({ stdout, stderr });
      const code = (err as NodeJS.ErrnoException).code;
      if (code === 'ENOENT') return reject(missingCommand(cmd));
      const text = (stderr || stdout || err.message).trim();
      const e = TRANSIENT.test(text) ? new SlurmUnavailableError(`${cmd}: ${text}`) : new SlurmCommandError(cmd, text);
      reject(e);
    });
  });
}

/** A Slurm command that failed with a message of its own (stderr). */
export class SlurmCommandError extends Error {
  constructor(
    readonly command: string,
    readonly text: string,
  ) {
    super(`${command}: ${text}`);
    this.name = 'SlurmCommandError';
  }
}

function missingCommand(cmd: string): UserError {
  return new UserError(
    `${cmd} is not on this worker's PATH (${process.env.PATH ?? ''}), so it cannot run shards on Slurm`,
    {
      kind: 'SlurmError',
      where: 'launcher.kind = "slurm"',
      fix: `run the worker on a machine with Slurm's client commands (a login node; Debian: apt-get install slurm-client), or set launcher.kind = "local"`,
    },
  );
}

/** Slurm's message, and what to change for it. */
function refusalFix(text: string): string {
  if (/invalid partition/i.test(text))
    return 'set launcher.partition to a partition that `sinfo --summarize` lists, or to "" for the default partition';
  if (/account/i.test(text))
    return 'set launcher.account to an account of yours (`sacctmgr show associations user=$USER format=account`), or to "" for your default account';
  if (/time limit|--time/i.test(text))
    return "set launcher.time_limit within the partition's limit (`sinfo --summarize`)";
  if (/node count|gres|gpu|memory|cpu|configuration is not available/i.test(text))
    return "ask for what the partition's nodes have (launcher.nodes, gpus_per_node, cpus_per_task, mem; `sinfo --Node --long`)";
  return 'correct the [launcher] settings or launcher.sbatch_args so that sbatch accepts the job';
}

/**
 * Submits a batch script; returns the job id. sbatch's refusal is a SlurmError (non-retryable).
 * The job gets sbatch's environment (its default --export=ALL): this process's, with `env` laid over it.
 */
export async function sbatch(args: string[], script: string, stage: string, env?: NodeJS.ProcessEnv): Promise<string> {
  let out: Run;
  try {
    out = await run('sbatch', ['--parsable', ...args, script], env);
  } catch (e) {
    if (!(e instanceof SlurmCommandError)) throw e;
    throw new UserError(`sbatch refused the batch job of stage ${stage}: ${e.text.replace(/\n/g, ' | ')}`, {
      kind: 'SlurmError',
      where: `sbatch ${args.join(' ')} ${script}`,
      fix: refusalFix(e.text),
    });
  }
  const id = out.stdout.trim().split(';')[0] ?? '';
  if (!/^\d+$/.test(id)) throw new Error(`sbatch printed no job id: ${JSON.stringify(out.stdout)} ${out.stderr}`);
  return id;
}

export interface SlurmJob {
  id: string;
  state: string;
}

/** This user's jobs of that name that have not ended, oldest first. */
export async function liveJobs(name: string): Promise<SlurmJob[]> {
  const { stdout } = await run('squeue', ['--noheader', '--me', `--name=${name}`, '--format=%i|%T']);
  return stdout
    .split('\n')
    .map((l) => l.trim().split('|'))
    .filter((p): p is [string, string] => p.length === 2 && /^\d+$/.test(p[0]!))
    .map(([id, state]) => ({ id, state }))
    .filter((j) => LIVE_STATES.has(j.state))
    .sort((a, b) => Number(a.id) - Number(b.id));
}

export interface JobInfo {
  state: string;
  reason: string;
  exitCode: string;
  start: string;
  end: string;
  /** Its output file (StdOut). */
  stdout: string;
}

/** A job's state from scontrol; "GONE" once the controller no longer knows it (MinJobAge after its end). */
export async function jobInfo(id: string): Promise<JobInfo> {
  try {
    const { stdout } = await run('scontrol', ['--oneliner', 'show', 'job', id]);
    const field = (k: string): string => new RegExp(`(?:^| )${k}=(\\S*)`).exec(stdout)?.[1] ?? '';
    return {
      state: field('JobState'),
      reason: field('Reason'),
      exitCode: field('ExitCode'),
      start: field('StartTime'),
      end: field('EndTime'),
      stdout: field('StdOut'),
    };
  } catch (e) {
    if (e instanceof SlurmCommandError && /Invalid job id/i.test(e.text))
      return { state: 'GONE', reason: '', exitCode: '', start: '', end: '', stdout: '' };
    throw e;
  }
}

/** Sends SIGUSR1 to the job's batch shell (the trainer): it saves a checkpoint and ends. */
export async function signalJob(id: string, signal = 'USR1'): Promise<void> {
  await run('scancel', [`--signal=${signal}`, '--batch', id]);
}

/** Cancels the job (SIGTERM, then SIGKILL after KillWait; a pending job never starts). */
export async function cancelJob(id: string): Promise<void> {
  await run('scancel', [id]);
}
