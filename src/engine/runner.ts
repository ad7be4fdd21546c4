/**
 * Runs the external trainer of one shard and turns what it does into what a shard of the built-in
 * engine reports: progress, a stop that keeps the work done, and a result read from its
 * checkpoints. It runs where the trainer runs: in the engine child of the local launcher, or as the
 * program of a Slurm batch job (child.ts).
 *
 *   take the stage (failed starts, torn step folders aside, a lease unless the trainer takes one)
 *   -> start the trainer in a process group of its own
 *   -> follow it: progress (metrics.jsonl, or its output lines -> metrics.jsonl), new complete
 *      checkpoints, the shard's bounds, stop requests, the lease
 *   -> at its end: the result from the latest complete checkpoint, or why it failed
 *
 * A stop (pause, cancel, Slurm's time-limit warning) follows the preset: "signal" sends stop_signal
 * (the trainer saves and exits), "checkpoint" waits for its next complete checkpoint, "kill"
 * terminates it at once; stop_grace_seconds later it is terminated in any case. The shard's bounds
 * (shard.max_seconds, shard.max_steps) never kill: they stop with the signal, or at the next
 * complete checkpoint (at the latest 2 x shard.max_seconds + 300 s after the start, so that the
 * activity ends before its start-to-close timeout).
 */
import { type ChildProcess, spawn } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import * as readline from 'node:readline';
import { FencedError, Lease } from '../checkpoint/lease';
import { UserError } from '../errors';
import type { Logger } from '../log';
import { metricsFile, stageDir } from '../paths';
import type { ShardProgress, ShardSummary } from '../shared/types';
import { MetricsFollower, fileSize } from '../train/launch/metrics-follow';
import type { ShardRequest } from '../train/shard-types';
import type { CommandShard } from './command';
import { type EngineRun, StageEngineFiles } from './files';
import { HEAD_NODE_MARK } from './preset';
import { LAYOUTS, logProgress } from './registry';
import { commandSummary, latestComplete } from './summary';

/** Everything the runner needs, as JSON (the engine child's argument, or a Slurm job's request file). */
export interface RunnerSpec {
  stage: string;
  totalSteps: number;
  jobDir: string;
  command: CommandShard;
  /** The shard's bounds (0 steps = no step bound). */
  maxSeconds: number;
  maxSteps: number;
  /** Who runs it, for the stage's lease. */
  who: string;
  /** Refuse to start after this many failed starts in a row (the local launcher; Slurm counts its jobs). */
  maxFailedStarts?: number;
  /** Append the trainer's output here (local); else to this process's stderr (a Slurm job's output). */
  outputFile?: boolean;
}

/** The trainer failed (exited non-zero, or ended without a checkpoint): retryable, it resumes. */
export class TrainerFailedError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'TrainerFailedError';
  }
}

/** Seconds between SIGTERM and SIGKILL when the trainer is terminated. */
const TERM_GRACE_SECONDS = 10;
/** Milliseconds between reads of metrics.jsonl and the lease. */
const TICK_MS = 250;
/** Milliseconds between reads of the layout (a checkpoint folder may be large to inspect) unless a stop waits for one. */
const LAYOUT_POLL_MS = 2000;
/** Lines of the trainer's output kept for an error message. */
const TAIL_LINES = 20;

interface Stopping {
  reason: ShardSummary['reason'];
  mode: 'signal' | 'checkpoint' | 'kill';
  /** The latest complete step when it began (mode "checkpoint": the next one ends the trainer). */
  baseStep: number;
  deadline: number;
}

export class CommandRunner {
  private child: ChildProcess | undefined;
  private stopping: Stopping | undefined;
  private terminating = false;
  private fenced: FencedError | undefined;
  private readonly t0 = Date.now();
  private startStep = 0;
  private lastStep = 0;
  private latestStep = 0;
  private lastProgress: { step: number; at: number } | undefined;
  private layoutReadAt = 0;
  private progressed = false;
  private readonly tail: string[] = [];
  private readonly files: StageEngineFiles;
  private readonly sDir: string;
  private readonly backend: string;
  private readonly device: string;

  constructor(
    private readonly spec: RunnerSpec,
    private readonly log: Logger,
    private readonly onProgress?: (p: ShardProgress) => void,
    private readonly onStarted?: (pid: number) => void,
  ) {
    this.sDir = stageDir(spec.jobDir, spec.stage);
    this.files = new StageEngineFiles(this.sDir);
    const d = spec.command.devices;
    this.backend = spec.command.preset;
    this.device = `${d.nodes} node${d.nodes === 1 ? '' : 's'} x ${d.gpusPerNode} device${d.gpusPerNode === 1 ? '' : 's'}`;
  }

  /** Pause, cancel, Slurm's warning: stop the trainer the preset's way; run() then resolves with the result. */
  requestStop(): void {
    this.beginStop('stop');
  }

  /** The parent is gone: kill the trainer now; nothing more is reported. */
  abandon(): void {
    this.killGroup('SIGKILL');
  }

  async run(): Promise<ShardSummary> {
    const cmd = this.spec.command;
    this.files.ensure();
    this.checkFailedStarts();
    // Fencing: a trainer that does not take the stage's lease itself (any but this package's CLI,
    // whatever its layout) is fenced here, by a lease the runner holds for it.
    // A spec written before trainerTakesLease existed (a Slurm job queued across an upgrade) had
    // the rule "layout ours = our CLI, which takes the lease itself".
    const takesLease = cmd.trainerTakesLease ?? cmd.layout === 'ours';
    const lease = takesLease ? undefined : Lease.acquire(this.sDir, this.spec.who);
    const latest = latestComplete(cmd.layout, cmd.runDir);
    this.setAsideTorn(latest?.step ?? -1);
    this.startStep = this.latestStep = this.lastStep = latest?.step ?? 0;
    const metrics = metricsFile(this.sDir);
    const follower =
      cmd.progressPattern === null
        ? new MetricsFollower(metrics, fileSize(metrics), this.spec.stage, this.spec.totalSteps)
        : undefined;
    if (this.stopping) return this.finish({ code: null, signal: null }); // stopped before it started
    const { exit } = await this.start();
    const ticker = setInterval(
      () =>
        this.tick(follower, lease).catch((e: unknown) =>
          this.log.warn({ err: (e as Error).message }, 'engine: cannot follow the trainer; trying again'),
        ),
      TICK_MS,
    );
    let ended: { code: number | null; signal: NodeJS.Signals | null };
    try {
      ended = await exit;
    } finally {
      clearInterval(ticker);
    }
    if (follower) for (const p of await follower.read()) this.progress(p.step, p.loss, p.gradNorm, false);
    this.killGroup('SIGKILL'); // what it left behind (ranks of a launcher that died)
    this.latestStep = latestComplete(cmd.layout, cmd.runDir)?.step ?? this.latestStep;
    if (this.latestStep > this.startStep) this.progressed = true;
    return this.finish(ended);
  }

  /** Starts the trainer in a process group of its own; resolves when it has started, with its end (`exit`). */
  private start(): Promise<{ exit: Promise<{ code: number | null; signal: NodeJS.Signals | null }> }> {
    const cmd = this.spec.command;
    const argv = cmd.argv.map((a) => a.split(HEAD_NODE_MARK).join(os.hostname()));
    const out = this.spec.outputFile ? fs.openSync(this.files.output(), 'a') : undefined;
    const write = (s: string): void => {
      if (out !== undefined) fs.writeSync(out, s);
      else process.stderr.write(s);
    };
    write(`--- ${new Date().toISOString()} ${this.spec.who}: ${argv.join(' ')} (in ${cmd.cwd})\n`);
    this.log.info({ argv, cwd: cmd.cwd, startStep: this.startStep }, 'engine: starting the trainer');
    const child = spawn(argv[0]!, argv.slice(1), {
      cwd: cmd.cwd,
      env: { ...process.env, ...cmd.env },
      stdio: ['ignore', 'pipe', 'pipe'],
      detached: true,
    });
    this.child = child;
    const onLine = (line: string): void => {
      write(`${line}\n`);
      this.tail.push(line);
      if (this.tail.length > TAIL_LINES) this.tail.shift();
      if (cmd.progressPattern !== null) {
        const p = logProgress.parse(line, cmd.progressPattern);
        if (p) this.progress(p.step, p.loss, p.gradNorm, true);
      }
      // A line may follow a save ("saved step-N"): a stop waiting for a checkpoint looks at once.
      if (this.stopping?.mode === 'checkpoint') this.checkStop();
    };
    let open = 2;
    const ended = new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((resolve) => {
      let exit: { code: number | null; signal: NodeJS.Signals | null } | undefined;
      const done = (): void => {
        if (!exit || open > 0) return;
        if (out !== undefined) fs.closeSync(out);
        resolve(exit);
      };
      for (const s of [child.stdout!, child.stderr!]) {
        const rl = readline.createInterface({ input: s });
        rl.on('line', onLine);
        rl.on('close', () => {
          open--;
          done();
        });
      }
      child.on('exit', (code, signal) => {
        exit = { code, signal };
        // Ranks it left behind keep the pipes open: end them, then the output is complete.
        this.killGroup('SIGKILL');
        setTimeout(() => {
          open = 0; // something outside the group still holds them: do not wait for it
          done();
        }, TERM_GRACE_SECONDS * 1000).unref();
        done();
      });
      child.on('error', (e) => {
        write(`cannot start the trainer: ${e.message}\n`);
        this.tail.push(`cannot start the trainer: ${e.message}`);
        exit = { code: 127, signal: null };
        open = 0;
        done();
      });
    });
    // Wrapped: a promise resolved with a promise would wait for it (for the trainer's end).
    return new Promise((resolve) => {
      child.once('spawn', () => {
        if (child.pid !== undefined) this.onStarted?.(child.pid);
        resolve({ exit: ended });
      });
      child.once('error', () => resolve({ exit: ended }));
    });
  }

  /** Progress, bounds, stop deadlines and the lease, four times a second; new checkpoints every LAYOUT_POLL_MS. */
  private async tick(follower: MetricsFollower | undefined, lease: Lease | undefined): Promise<void> {
    try {
      lease?.check('training on');
    } catch (e) {
      if (!(e instanceof FencedError)) throw e;
      this.fenced = e;
      this.log.warn({ err: e.message }, 'engine: fenced; killing the trainer');
      this.killGroup('SIGKILL');
      return;
    }
    if (follower) for (const p of await follower.read()) this.progress(p.step, p.loss, p.gradNorm, false);
    if (Date.now() - this.layoutReadAt >= LAYOUT_POLL_MS) this.refreshLatest();
    this.checkStop();
  }

  /** The latest complete checkpoint's step, read again from the layout. */
  private refreshLatest(): number {
    this.layoutReadAt = Date.now();
    const cmd = this.spec.command;
    const latest = latestComplete(cmd.layout, cmd.runDir)?.step ?? this.latestStep;
    if (latest !== this.latestStep) {
      this.latestStep = latest;
      this.log.info({ step: latest }, 'engine: new complete checkpoint');
    }
    return latest;
  }

  /** Starts a stop at a bound; ends a stop that reached its checkpoint or its deadline. */
  private checkStop(): void {
    const now = Date.now();
    if ((now - this.t0) / 1000 >= this.spec.maxSeconds) this.beginStop('time');
    if (this.spec.maxSteps > 0 && this.lastStep - this.startStep >= this.spec.maxSteps) this.beginStop('steps');
    const s = this.stopping;
    if (!s || this.terminating) return;
    if (s.mode === 'checkpoint' && this.refreshLatest() > s.baseStep) {
      this.log.info({ step: this.latestStep }, 'engine: the trainer reached a new checkpoint; terminating it');
      this.terminate();
    } else if (now >= s.deadline) {
      this.log.warn({ mode: s.mode, reason: s.reason }, 'engine: the trainer did not stop in time; terminating it');
      this.terminate();
    }
  }

  /** A step done: the stage's metrics line (output layouts) and the progress report. */
  private progress(step: number, loss: number | null, gradNorm: number | null, writeMetrics: boolean): void {
    if (writeMetrics && step <= this.lastStep) return; // a repeated or resumed step line
    const now = Date.now();
    const stepSeconds =
      this.lastProgress && step > this.lastProgress.step
        ? (now - this.lastProgress.at) / 1000 / (step - this.lastProgress.step)
        : null;
    this.lastProgress = { step, at: now };
    this.lastStep = Math.max(this.lastStep, step);
    this.progressed = true;
    if (writeMetrics) {
      const line = {
        stage: this.spec.stage,
        step,
        loss,
        grad_norm: gradNorm,
        step_time: stepSeconds,
        source: this.spec.command.preset,
        time: new Date(now).toISOString(),
      };
      fs.appendFileSync(metricsFile(this.sDir), `${JSON.stringify(line)}\n`);
    }
    this.onProgress?.({
      stage: this.spec.stage,
      step,
      totalSteps: this.spec.totalSteps,
      loss,
      gradNorm,
      stepSeconds,
      backend: this.backend,
      device: this.device,
    });
    this.checkStop();
  }

  /** Begins a stop for `reason`. A user's stop overrides a bound's; a bound never kills. */
  private beginStop(reason: ShardSummary['reason']): void {
    const user = reason === 'stop';
    if (this.stopping && !(user && this.stopping.reason !== 'stop')) return;
    const policy = this.spec.command.stop;
    const mode = user ? policy.how : policy.how === 'signal' ? 'signal' : 'checkpoint';
    const now = Date.now();
    const deadline = user
      ? now + policy.graceSeconds * 1000
      : Math.max(now + policy.graceSeconds * 1000, this.t0 + (2 * this.spec.maxSeconds + 300) * 1000);
    const already = this.stopping?.mode === mode && mode !== 'kill';
    const baseStep = this.stopping?.baseStep ?? this.refreshLatest();
    this.stopping = { reason, mode, baseStep, deadline: already ? this.stopping!.deadline : deadline };
    this.log.info({ reason, mode, step: this.lastStep }, 'engine: stopping the trainer');
    if (!this.child) return;
    if (mode === 'kill') this.terminate();
    else if (mode === 'signal' && !already) this.killGroup(policy.signal as NodeJS.Signals);
  }

  /** SIGTERM to the trainer's group, SIGKILL after TERM_GRACE_SECONDS. */
  private terminate(): void {
    if (this.terminating) return;
    this.terminating = true;
    this.killGroup('SIGTERM');
    setTimeout(() => this.killGroup('SIGKILL'), TERM_GRACE_SECONDS * 1000).unref();
  }

  private killGroup(signal: NodeJS.Signals): void {
    const pid = this.child?.pid;
    if (pid === undefined) return;
    try {
      process.kill(-pid, signal);
    } catch {
      /* the group is gone */
    }
  }

  /** Refuses to start again after max_failed_starts failed starts in a row (local launcher). */
  private checkFailedStarts(): void {
    const max = this.spec.maxFailedStarts;
    if (max === undefined) return;
    const failed = this.files.failedStarts();
    if (failed.length < max) return;
    throw new UserError(
      `the last ${failed.length} runs of engine ${this.spec.command.preset} for stage ${this.spec.stage} ended without training a step or reporting a result (exits: ${failed.map((f) => f.exit).join(', ')}); its output (${this.files.output()}) ends with:\n${this.files.outputTail()}\n`,
      {
        kind: 'EngineError',
        where: `engine ${this.spec.command.preset}, stage ${this.spec.stage}`,
        fix: "fix what the output shows (the program, its working directory or environment in the preset, the worker's environment), then start the job again: it resumes from its latest complete checkpoint",
      },
    );
  }

  /** Moves step folders newer than the latest complete checkpoint (torn saves) aside, where the layout says where they are. */
  private setAsideTorn(latest: number): void {
    const cmd = this.spec.command;
    const stepsDir = LAYOUTS[cmd.layout]?.stepsDir?.(cmd.runDir);
    if (!stepsDir) return;
    let names: string[] = [];
    try {
      names = fs.readdirSync(stepsDir);
    } catch {
      return;
    }
    for (const n of names) {
      const m = /^step-(\d+)$/.exec(n);
      if (!m || Number(m[1]) <= latest) continue;
      const aside = `torn-${n}-${Date.now()}`;
      fs.renameSync(path.join(stepsDir, n), path.join(stepsDir, aside));
      this.log.warn(
        { dir: path.join(stepsDir, n), aside },
        'engine: a torn checkpoint (incomplete) moved aside before the start',
      );
    }
  }

  private finish(ended: { code: number | null; signal: NodeJS.Signals | null }): ShardSummary {
    const cmd = this.spec.command;
    const exit = this.child ? (ended.signal ?? String(ended.code)) : 'not started';
    const stopped = this.stopping !== undefined;
    const summary =
      this.fenced || (ended.code !== 0 && !stopped)
        ? null
        : commandSummary({
            layout: cmd.layout,
            runDir: cmd.runDir,
            stageDir: this.sDir,
            stage: this.spec.stage,
            totalSteps: this.spec.totalSteps,
            startStep: this.startStep,
            seconds: (Date.now() - this.t0) / 1000,
            reason: this.stopping?.reason ?? 'stop',
            backend: this.backend,
            device: this.device,
          });
    const run: EngineRun = {
      at: new Date().toISOString(),
      exit,
      startStep: this.startStep,
      endStep: this.latestStep,
      progressed: this.progressed,
      stopped,
      result: summary !== null,
    };
    if (this.spec.maxFailedStarts !== undefined) this.files.recordRun(run);
    this.log.info({ ...run, preset: cmd.preset }, 'engine: the trainer ended');
    if (this.fenced) throw this.fenced;
    if (summary) return summary;
    const tail = this.tail.join('\n');
    if (ended.code === 0 || stopped)
      throw new TrainerFailedError(
        `engine ${cmd.preset} ended (${exit}) without a complete checkpoint in ${cmd.runDir}; its output ends with:\n${tail}`,
      );
    throw new TrainerFailedError(
      `engine ${cmd.preset} exited with ${ended.signal ? `signal ${ended.signal}` : `code ${ended.code}`} at step ${this.lastStep}; the stage resumes from its latest complete checkpoint (step ${this.latestStep}). Its output ends with:\n${tail}`,
    );
  }
}

/** The engine runner's entry point (child.ts), for the local launcher and Slurm batch scripts. */
export const ENGINE_CHILD = path.join(__dirname, 'child.js');

/** The runner's spec for a launch of a command shard. */
export function runnerSpec(
  launch: { stage: string; totalSteps: number; request: ShardRequest; command: CommandShard },
  local: { maxFailedStarts: number } | null,
): RunnerSpec {
  const r = launch.request;
  return {
    stage: launch.stage,
    totalSteps: launch.totalSteps,
    jobDir: r.jobDir,
    command: launch.command,
    maxSeconds: r.maxSeconds ?? Number.POSITIVE_INFINITY,
    maxSteps: r.maxSteps ?? 0,
    who: r.who ?? `pid ${process.pid}`,
    ...(local ? { maxFailedStarts: local.maxFailedStarts, outputFile: true } : {}),
  };
}
