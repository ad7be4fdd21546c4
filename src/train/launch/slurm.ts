/**
 * The Slurm launcher: one shard attempt = one batch job named <jobName>.<stage>.
 *
 *   find the stage's live job (another attempt submitted it: re-attach), else hand over the result
 *   of a job that ended while nobody watched it, else submit one (sbatch --dependency=singleton:
 *   Slurm itself never runs two jobs of that name at once)
 *   -> watch it: its state (scontrol every poll_seconds), its progress (metrics.jsonl, every second)
 *   -> at its end, read the trainer's result file, or count it as failed and show its output
 *
 * The job outlives this worker. Pause and cancel signal it (SIGUSR1: save and end); a worker that
 * stops watching (shutdown, an attempt Temporal gave up) leaves it running for the next attempt.
 * Every job takes the stage's next lease when its trainer starts, so a superseded one cannot write.
 *
 * An external engine's shard (launch.command) runs the same way: the job's program is the engine
 * runner (src/engine/child.ts --detached), which starts the trainer, turns SIGUSR1 into the
 * preset's stop, writes the result file from the trainer's checkpoints, and puts progress from the
 * trainer's output lines into metrics.jsonl.
 */
import * as path from 'node:path';
import { asUserErrorKind, UserError } from '../../errors';
import type { Logger } from '../../log';
import { metricsFile, stageDir } from '../../paths';
import type { LauncherSettings, ShardProgress } from '../../shared/types';
import type { ShardResult } from '../shard-types';
import { decode } from '../protocol';
import { ENGINE_CHILD, runnerSpec } from '../../engine/runner';
import { fileSize, LineFollower, MetricsFollower } from './metrics-follow';
import {
  cancelJob,
  type JobInfo,
  jobInfo,
  LIVE_STATES,
  liveJobs,
  type SlurmJob,
  sbatch,
  signalJob,
} from './slurm-commands';
import { type EndedJob, StageSlurmFiles, shellQuote, writeAtomically } from './slurm-files';
import { DetachedError, type LaunchOptions, type Launcher, type ShardLaunch } from './types';

const CHILD = path.join(__dirname, '..', 'child.js');
/** Seconds a signalled job gets to save and end before it is cancelled. */
const STOP_GRACE_SECONDS = 120;

/** The Slurm job name of a stage: <jobName>.<stage>. */
export const slurmJobName = (jobName: string, stage: string): string => `${jobName}.${stage}`;

/** A Slurm job that ended without a result (killed, out of memory, node failure, a crash). Retryable: the stage resumes in a new job. */
export class SlurmJobFailedError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'SlurmJobFailedError';
  }
}

/** The job was stopped (pause, cancel) before it trained: nothing to report but the stop itself. */
export class SlurmJobStoppedError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'SlurmJobStoppedError';
  }
}

export class SlurmLauncher implements Launcher {
  readonly kind = 'slurm';

  constructor(private readonly settings: LauncherSettings) {}

  async run(launch: ShardLaunch, opts: LaunchOptions): Promise<ShardResult> {
    const sDir = stageDir(launch.request.jobDir, launch.stage);
    const files = new StageSlurmFiles(sDir);
    files.ensure();
    const name = slurmJobName(launch.jobName, launch.stage);
    const log = opts.log.child({ slurmJobName: name });
    const found = await this.attach(name, files, sDir, launch, log);
    if (found.result) return found.result;
    const jobId = found.jobId ?? (await this.submit(name, files, sDir, launch, log, opts.env));
    return new SlurmJobWatch(this.settings, launch, files, sDir, jobId, opts, log).run();
  }

  /** The stage's live job to re-attach to, or the result of one that ended unwatched. */
  private async attach(
    name: string,
    files: StageSlurmFiles,
    sDir: string,
    launch: ShardLaunch,
    log: Logger,
  ): Promise<{ jobId?: string; result?: ShardResult }> {
    const job = await liveJobOfStage(name, files, launch.jobName, log);
    if (job) {
      if (!files.submission(job.id))
        files.recordSubmission({
          jobId: job.id,
          name,
          submittedAt: new Date().toISOString(),
          by: `(found running by ${launch.request.who ?? 'a worker'})`,
          metricsBytes: fileSize(metricsFile(sDir)),
        });
      log.info({ slurmJob: job.id, slurmState: job.state }, 'slurm: re-attaching to the running job of the stage');
      return { jobId: job.id };
    }
    // Jobs that ended while no worker watched them (it died): the newest one's result is this attempt's.
    const unwatched = files.submitted().filter((id) => !files.ended(id));
    for (const [i, id] of unwatched.entries()) {
      const end = new SlurmJobWatch(this.settings, launch, files, sDir, id, { log }, log);
      try {
        const result = await end.finish(await jobInfo(id), false);
        if (i === unwatched.length - 1) {
          log.info({ slurmJob: id, step: result.step }, 'slurm: the job ended while no worker watched it; its result');
          return { result };
        }
      } catch (e) {
        if (!(e instanceof SlurmJobFailedError)) throw e;
        log.warn({ slurmJob: id, err: e.message }, 'slurm: a job ended without a result while no worker watched it');
      }
    }
    return {};
  }

  private async submit(
    name: string,
    files: StageSlurmFiles,
    sDir: string,
    launch: ShardLaunch,
    log: Logger,
    env: NodeJS.ProcessEnv | undefined,
  ): Promise<string> {
    const failed = files.failedStarts();
    if (failed.length >= this.settings.maxFailedStarts) throw failedStartsError(name, files, failed);
    const { command } = launch;
    writeAtomically(files.request(), command ? runnerSpec({ ...launch, command }, null) : launch.request);
    writeAtomically(files.script(), batchScript(this.settings.setup, files, command ? ENGINE_CHILD : CHILD));
    const args = sbatchArgs(this.settings, name, files);
    const metricsBytes = fileSize(metricsFile(sDir));
    const jobId = await sbatch(args, files.script(), launch.stage, env);
    files.recordSubmission({
      jobId,
      name,
      submittedAt: new Date().toISOString(),
      by: launch.request.who ?? '',
      metricsBytes,
    });
    log.info({ slurmJob: jobId, sbatch: args.join(' ') }, 'slurm: submitted the shard as a batch job');
    // Another attempt's job that appeared meanwhile is superseded: one live job per stage.
    for (const j of await liveJobs(name)) if (Number(j.id) < Number(jobId)) await supersede(j.id, log);
    return jobId;
  }
}

/**
 * The newest live job of the stage that no worker has seen end; older ones are cancelled as
 * superseded. A live job of that name writing elsewhere belongs to another job: refused.
 */
async function liveJobOfStage(
  name: string,
  files: StageSlurmFiles,
  jobName: string,
  log: Logger,
): Promise<SlurmJob | undefined> {
  const ours: SlurmJob[] = [];
  for (const j of (await liveJobs(name)).filter((x) => !files.ended(x.id))) {
    const info = await jobInfo(j.id);
    if (path.dirname(info.stdout) !== files.dir)
      throw new UserError(
        `another Slurm job named ${name} (job ${j.id}, output ${info.stdout}) runs outside this job's folder ${path.dirname(files.dir)}`,
        {
          kind: 'SlurmError',
          where: `job name ${jobName}`,
          fix: 'Slurm runs one job of a name at a time (sbatch --dependency=singleton): give this job a name no other job of yours uses, or cancel that one',
        },
      );
    ours.push(j);
  }
  const newest = ours.pop();
  for (const old of ours) await supersede(old.id, log);
  return newest;
}

async function supersede(id: string, log: Logger): Promise<void> {
  log.warn({ slurmJob: id }, 'slurm: cancelling a superseded job of the stage');
  await cancelJob(id).catch((e: unknown) => log.warn({ slurmJob: id, err: String(e) }, 'slurm: cancel failed'));
}

/** sbatch's options for a shard of the stage. */
export function sbatchArgs(s: LauncherSettings, name: string, files: StageSlurmFiles, cwd = process.cwd()): string[] {
  return [
    `--job-name=${name}`,
    `--output=${files.outputPattern()}`,
    '--open-mode=append',
    `--chdir=${cwd}`,
    '--dependency=singleton',
    `--signal=B:USR1@${s.signalSeconds}`,
    `--nodes=${s.nodes}`,
    ...(s.partition ? [`--partition=${s.partition}`] : []),
    ...(s.account ? [`--account=${s.account}`] : []),
    ...(s.gpusPerNode > 0 ? [`--gpus-per-node=${s.gpusPerNode}`] : []),
    ...(s.cpusPerTask > 0 ? [`--cpus-per-task=${s.cpusPerTask}`] : []),
    ...(s.mem ? [`--mem=${s.mem}`] : []),
    ...(s.timeLimit ? [`--time=${s.timeLimit}`] : []),
    ...s.sbatchArgs,
  ];
}

/**
 * The batch script: the setup lines, then the trainer (`entry`: the built-in child.js, or the
 * engine runner of an external engine) in place of the shell (exec), so that the batch shell's
 * signals (--signal=B:USR1, scancel --batch) reach it. This worker's node and package must be at
 * the same paths on the compute nodes (a shared file system).
 */
export function batchScript(setup: readonly string[], files: StageSlurmFiles, entry = CHILD): string {
  return [
    '#!/bin/bash',
    '# One training shard, written by the ttt-curriculum worker (README: "Running on a Slurm cluster").',
    '# The setup lines of [launcher] setup, then the trainer; a failing setup line ends the job.',
    'set -e',
    ...setup,
    `dir=${shellQuote(files.dir)}`,
    `exec ${shellQuote(process.execPath)} ${shellQuote(entry)} --detached ${shellQuote(files.request())} "$dir/$SLURM_JOB_ID.result.json" "$dir/$SLURM_JOB_ID.checkpoints.jsonl"`,
    '',
  ].join('\n');
}

function failedStartsError(name: string, files: StageSlurmFiles, failed: string[]): UserError {
  const last = failed[0]!;
  const end = files.ended(last);
  return new UserError(
    `the last ${failed.length} Slurm jobs of ${name} (${[...failed].reverse().join(', ')}) ended without training a step or reporting a result; the last one ended ${end?.state ?? ''} (exit code ${end?.exitCode ?? '?'}) and its output (${files.output(last)}) ends with:\n${files.outputTail(last)}\n`,
    {
      kind: 'SlurmError',
      where: `[launcher] of ${name}`,
      fix: 'fix what the output shows (often a launcher.setup line, or node and this package missing at the same path on the compute nodes), then start the job again: it resumes from its latest checkpoint',
    },
  );
}

/** Supervision of one submitted job until it ends. */
class SlurmJobWatch {
  private state = 'UNKNOWN';
  private stopSentAt: number | undefined;
  private stoppedBeforeStart = false;

  constructor(
    private readonly settings: LauncherSettings,
    private readonly launch: ShardLaunch,
    private readonly files: StageSlurmFiles,
    private readonly sDir: string,
    private readonly jobId: string,
    private readonly opts: Pick<LaunchOptions, 'onProgress' | 'onCheckpoint' | 'onState' | 'stop' | 'detach'> & {
      log?: Logger;
    },
    private readonly log: Logger,
  ) {}

  async run(): Promise<ShardResult> {
    const sub = this.files.submission(this.jobId);
    const follower = new MetricsFollower(
      metricsFile(this.sDir),
      sub?.metricsBytes ?? 0,
      this.launch.stage,
      this.launch.totalSteps,
    );
    const saves = new LineFollower(this.files.checkpoints(this.jobId), 0);
    let info: JobInfo | undefined;
    let polled = 0;
    for (;;) {
      if (this.opts.detach?.aborted)
        throw new DetachedError(`stopped watching slurm job ${this.jobId}; it keeps running for the next attempt`);
      if (Date.now() - polled >= this.settings.pollSeconds * 1000) {
        polled = Date.now();
        info = await this.poll();
      }
      for (const p of await follower.read()) this.progress(p);
      for (const l of await saves.read()) this.checkpoint(l);
      if (info && !LIVE_STATES.has(info.state)) break;
      if (this.opts.stop?.aborted) await this.stop();
      // Wake early for a stop not yet acted on, or a detach.
      await sleep(1000, [this.stopSentAt === undefined ? this.opts.stop : undefined, this.opts.detach]);
    }
    for (const p of await follower.read()) this.progress(p);
    for (const l of await saves.read()) this.checkpoint(l);
    return this.finish(info, true);
  }

  private progress(p: ShardProgress): void {
    this.opts.onProgress?.({ ...p, launcher: { kind: 'slurm', jobId: this.jobId, state: this.state } });
  }

  private checkpoint(line: string): void {
    const m = decode(line);
    if (m?.ttt !== 'checkpoint') return;
    const { ttt: _t, ...c } = m;
    this.opts.onCheckpoint?.(c);
  }

  /** The job's state; a controller that does not answer is logged and asked again next time. */
  private async poll(): Promise<JobInfo | undefined> {
    let info: JobInfo;
    try {
      info = await jobInfo(this.jobId);
    } catch (e) {
      if (e instanceof UserError) throw e;
      this.log.warn({ slurmJob: this.jobId, err: (e as Error).message }, 'slurm: cannot read the job state; retrying');
      return undefined;
    }
    if (info.state !== this.state) {
      this.state = info.state;
      this.log.info({ slurmJob: this.jobId, slurmState: info.state, reason: info.reason }, 'slurm: job state');
      this.opts.onState?.({ kind: 'slurm', jobId: this.jobId, state: info.state });
    }
    return info;
  }

  /** Pause or cancel: a running job saves and ends on SIGUSR1; a pending one is cancelled; one that does not end in time is cancelled. */
  private async stop(): Promise<void> {
    const now = Date.now();
    if (this.stopSentAt === undefined) {
      this.stopSentAt = now;
      if (this.state === 'PENDING') {
        this.stoppedBeforeStart = true;
        this.log.info({ slurmJob: this.jobId }, 'slurm: cancelling the pending job');
        await cancelJob(this.jobId).catch(() => {});
        return;
      }
      this.log.info({ slurmJob: this.jobId }, 'slurm: asking the job to save a checkpoint and end (SIGUSR1)');
      await signalJob(this.jobId).catch(async (e: unknown) => {
        this.log.warn({ slurmJob: this.jobId, err: String(e) }, 'slurm: cannot signal the job; cancelling it');
        await cancelJob(this.jobId).catch(() => {});
      });
    } else if (now - this.stopSentAt > this.stopGraceSeconds() * 1000) {
      this.stopSentAt = Number.POSITIVE_INFINITY;
      this.log.warn({ slurmJob: this.jobId }, 'slurm: the job did not end in time after SIGUSR1; cancelling it');
      await cancelJob(this.jobId).catch(() => {});
    }
  }

  /** How long a signalled job gets: an external engine's runner also waits for its trainer (stop_grace_seconds). */
  private stopGraceSeconds(): number {
    const c = this.launch.command;
    return c ? Math.max(STOP_GRACE_SECONDS, c.stop.graceSeconds + 30) : STOP_GRACE_SECONDS;
  }

  /** Records the job's end and returns its result, or throws what went wrong. */
  async finish(info: JobInfo | undefined, watched: boolean): Promise<ShardResult> {
    const id = this.jobId;
    let outcome = this.files.outcome(id);
    // A shared file system may show the trainer's last write a little late.
    for (let i = 0; !outcome && watched && i < 10; i++) {
      await sleep(500, []);
      outcome = this.files.outcome(id);
    }
    const sub = this.files.submission(id);
    const ended: EndedJob = {
      jobId: id,
      state: info?.state ?? 'UNKNOWN',
      exitCode: info?.exitCode ?? '',
      outcome: outcome?.ttt === 'result' ? 'result' : outcome?.ttt === 'error' ? 'error' : 'none',
      progressed: fileSize(metricsFile(this.sDir)) > (sub?.metricsBytes ?? 0),
      stopped: this.stopSentAt !== undefined,
      at: new Date().toISOString(),
    };
    this.files.recordEnd(ended);
    this.log.info({ slurmJob: id, ...ended }, 'slurm: job ended');
    if (outcome?.ttt === 'result') return outcome.result;
    if (outcome?.ttt === 'error') {
      if (outcome.userError) throw new UserError(outcome.message, { kind: asUserErrorKind(outcome.kind) });
      throw new SlurmJobFailedError(`slurm job ${id} failed: ${outcome.message}`);
    }
    if (this.stoppedBeforeStart) throw new SlurmJobStoppedError(`slurm job ${id} was cancelled before it started`);
    const failed = this.files.failedStarts();
    if (failed.length >= this.settings.maxFailedStarts)
      throw failedStartsError(slurmJobName(this.launch.jobName, this.launch.stage), this.files, failed);
    throw new SlurmJobFailedError(
      `slurm job ${id} ended ${ended.state} (exit code ${ended.exitCode || '?'}) without a result; the stage resumes from its latest checkpoint in a new job. Its output (${this.files.output(id)}) ends with:\n${this.files.outputTail(id)}`,
    );
  }
}

/** Waits `ms`, or less when one of the signals aborts. */
function sleep(ms: number, signals: (AbortSignal | undefined)[]): Promise<void> {
  return new Promise((resolve) => {
    const live = signals.filter((s): s is AbortSignal => s !== undefined);
    if (live.some((s) => s.aborted)) return resolve();
    const done = (): void => {
      clearTimeout(timer);
      for (const s of live) s.removeEventListener('abort', done);
      resolve();
    };
    const timer = setTimeout(done, ms);
    for (const s of live) s.addEventListener('abort', done, { once: true });
  });
}
