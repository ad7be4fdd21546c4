/**
 * `npm run chaos`: the tiny curriculum under fire. On its own Temporal dev server it runs the
 * curriculum once undisturbed (the reference), then again while SIGKILLing the worker at seeded
 * random moments, some of them while a checkpoint is being written, and restarting the Temporal
 * server once on the same port and SQLite file. After every kill a fresh worker is started.
 * Then it compares every stage's final checkpoint with the reference's, byte for byte.
 *
 * Two kinds of kill:
 *   step   the worker alone is SIGKILLed a seeded fraction of a step after a seeded step was
 *          reported; its training child must notice and exit by itself (checked).
 *   write  worker and training child are SIGKILLed together (a preempted node) as soon as the
 *          seeded checkpoint's hidden `.tmp-step-*` folder appears; a kill counts as landing
 *          inside the write when that folder is still there afterwards (never renamed).
 *
 * Steps redone are read from the stages' metrics.jsonl files: one line per trained step, so a
 * step trained twice has two lines.
 */
import * as fs from 'node:fs';
import * as path from 'node:path';
import type { Client } from '@temporalio/client';
import { stepDirName } from '../src/checkpoint/store';
import { sha256File } from '../src/io/files';
import { startJob } from '../src/temporal/client';
import { loadCurriculum, type Overrides } from '../src/config/load';
import { normaliseStageName } from '../src/shared/stages';
import { checkpointsDir, finalDir, metricsFile, stageDir } from '../src/paths';
import { isValidationLine } from '../src/train/metrics';
import { rngFor } from '../src/rng';
import { startDevServer, type DevServer } from '../src/temporal/devserver';
import type { CurriculumResult } from '../src/shared/types';
import {
  client as connect,
  eventMs,
  eventTypeName,
  historyEvents,
  server as startServer,
  spawnWorker,
  tmpDir,
  TINY,
  trainingChildren,
  type WorkerProc,
} from '../test/helpers';

export interface ChaosOptions {
  seed: number;
  /** Worker kills in the chaos run. */
  kills: number;
  /** How many of them land on checkpoint writes (default a third, at least 1). */
  writeKills?: number;
  /** Temporal server restarts in the chaos run (each between two kills). */
  serverRestarts?: number;
  /** Last stage to train (default: the whole curriculum). */
  until?: string;
  /** runtime.backend for both runs (default "wasm": deterministic, always installed). */
  backend?: string;
  /** trainShard heartbeat timeout: how long a dead worker's shard waits before it is retried. */
  heartbeatTimeoutSeconds?: number;
  /** More stage-config overrides, applied to both runs. */
  set?: Overrides;
  curriculum?: string;
  /** Folder for runs and the server's SQLite file (default: a new temporary folder). */
  dir?: string;
  log?: (line: string) => void;
}

export interface KillRecord {
  kind: 'step' | 'write';
  stage: string;
  /** The seeded step (write: the checkpoint step aimed at). */
  step: number;
  /** Seconds since the chaos run started. */
  at: number;
  /** The stage's last step in metrics.jsonl right after the kill. */
  lastReported?: number;
  /** Seconds from the kill until a fresh worker polled. */
  workerStartSeconds?: number;
  /** write kills: the `.tmp-*` folder was still there after the kill. */
  duringWrite?: boolean;
  /** The killed worker's pid, and the signal its exit reported (SIGKILL when the kill took). */
  workerPid?: number;
  exitSignal?: string | null;
  /**
   * Survived: the worker died of the SIGKILL and, after the kill, a trainShard activity was
   * completed by another worker (history: ActivityTaskCompleted events name the completing
   * worker's identity, pid@host) and the job completed.
   */
  survived?: boolean;
  note?: string;
}

export interface StageVerdict {
  stage: string;
  identical: boolean;
  chaosSha256: string;
  referenceSha256: string;
  /** Lines of metrics.jsonl for steps already trained once. */
  stepsRedone: number;
  /** Steps 1..N with no line at all (must be none). */
  stepsMissing: number[];
}

export interface ChaosReport {
  seed: number;
  backend: string;
  killsPlanned: number;
  /** Kills after which the job went on: see KillRecord.survived (observed, not the count of kill records). */
  killsSurvived: number;
  writeKillsLanded: number;
  serverRestarts: number;
  stepsRedone: number;
  stages: StageVerdict[];
  equal: boolean;
  referenceSeconds: number;
  chaosSeconds: number;
  lostPerKillSeconds: number;
  kills: KillRecord[];
  dir: string;
}

interface PlannedKill {
  kind: 'step' | 'write';
  stageIndex: number;
  stage: string;
  step: number;
  /** step kills: fraction of the last step's time to wait before killing. */
  frac: number;
}

const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

/** Steps of a metrics.jsonl file, one per step line (a torn last line and validation lines are ignored). */
export function metricLines(file: string): number[] {
  let text: string;
  try {
    text = fs.readFileSync(file, 'utf8');
  } catch {
    return [];
  }
  const steps: number[] = [];
  for (const line of text.split('\n')) {
    if (!line.trim()) continue;
    try {
      const l = JSON.parse(line) as { step: number };
      if (!isValidationLine(l)) steps.push(l.step);
    } catch {
      /* a line cut by a kill */
    }
  }
  return steps;
}

/** Lines for steps trained more than once, and steps 1..total never trained. */
export function redoneSteps(steps: number[], total: number): { redone: number; missing: number[] } {
  const seen = new Set(steps);
  const missing: number[] = [];
  for (let s = 1; s <= total; s++) if (!seen.has(s)) missing.push(s);
  return { redone: steps.length - seen.size, missing };
}

/**
 * Seeded kill moments, in curriculum order: `writeKills` distinct checkpoint steps and the rest
 * distinct other steps (never a stage's last step: a kill there would land on the promotion).
 */
export function planKills(
  stages: { name: string; steps: number; interval: number }[],
  kills: number,
  writeKills: number,
  seed: number,
): PlannedKill[] {
  const rand = rngFor(seed, 0xc4a05);
  const pick = <T>(xs: T[], n: number): T[] => {
    const pool = [...xs];
    const out: T[] = [];
    while (out.length < n && pool.length) out.push(pool.splice(Math.floor(rand() * pool.length), 1)[0]!);
    return out;
  };
  const writes: PlannedKill[] = [];
  const others: PlannedKill[] = [];
  stages.forEach((s, i) => {
    for (let step = 1; step <= s.steps; step++) {
      const k = { stageIndex: i, stage: s.name, step, frac: 0 };
      if (step % s.interval === 0 || step === s.steps) writes.push({ ...k, kind: 'write' });
      else others.push({ ...k, kind: 'step' });
    }
  });
  if (writeKills > writes.length || kills - writeKills > others.length) {
    throw new Error(
      `cannot place ${kills} kills (${writeKills} on checkpoint writes) in ${others.length + writes.length} steps`,
    );
  }
  const chosen = [
    ...pick(writes, writeKills),
    ...pick(others, kills - writeKills).map((k) => ({ ...k, frac: rand() * 0.8 })),
  ];
  return chosen.sort((a, b) => a.stageIndex - b.stageIndex || a.step - b.step);
}

export async function runChaos(opts: ChaosOptions): Promise<ChaosReport> {
  const log = opts.log ?? ((l: string) => process.stderr.write(`${l}\n`));
  const dir = opts.dir ?? tmpDir('chaos');
  const runs = path.join(dir, 'runs');
  const db = path.join(dir, 'temporal.sqlite');
  const backend = opts.backend ?? 'wasm';
  const curriculum = opts.curriculum ?? TINY;
  const set: Overrides = {
    ...opts.set,
    'job.dump_folder': runs,
    'runtime.backend': backend,
    'shard.heartbeat_timeout_seconds': opts.heartbeatTimeoutSeconds ?? 5,
  };
  const loaded = loadCurriculum(curriculum, set);
  const all = loaded.stages.map((s) => ({
    name: s.video.stage,
    steps: s.config.training.steps,
    interval: s.config.checkpoint.interval,
  }));
  const untilName = opts.until ? normaliseStageName(opts.until) : all[all.length - 1]!.name;
  const last = all.findIndex((s) => s.name === untilName);
  if (last < 0)
    throw new Error(`--until ${opts.until}: not a stage of ${curriculum} (${all.map((s) => s.name).join(', ')})`);
  const stages = all.slice(0, last + 1);
  const writeKills = Math.min(opts.kills, opts.writeKills ?? Math.max(1, Math.ceil(opts.kills / 3)));
  const plan = planKills(stages, opts.kills, writeKills, opts.seed);
  const restarts = Math.min(opts.serverRestarts ?? 1, Math.max(0, opts.kills - 1));
  // Restart the server after these kills (seeded, distinct, never after the last one).
  const restartRand = rngFor(opts.seed, 0x5e4e4);
  const restartAfter = new Set<number>();
  while (restartAfter.size < restarts) restartAfter.add(Math.floor(restartRand() * (opts.kills - 1)));
  const queue = 'chaos';
  const input = (jobName: string) => ({ jobName, curriculum, until: untilName, set });
  log(
    `chaos: seed ${opts.seed}, ${opts.kills} kills (${writeKills} on checkpoint writes), ${restarts} server restart(s), stages ${stages.map((s) => s.name).join(' ')}, backend ${backend}, folder ${dir}`,
  );
  log(`chaos: kill plan ${plan.map((k) => `${k.stage}@${k.step}${k.kind === 'write' ? '(write)' : ''}`).join(' ')}`);

  let srv: DevServer = await startServer(db);
  const port = srv.port;
  let c: Client = await connect(srv.address);
  // Training children held (SIGSTOP) across a server restart, continued once the next kill is
  // armed: on a fast machine training would otherwise run past the next kill's target (even to
  // the stage's end) while the server restarts, and that kill would interrupt nothing.
  let held: number[] = [];
  const release = (): void => {
    for (const pid of held) signal(pid, 'SIGCONT');
    held = [];
  };
  const workers: WorkerProc[] = [];
  const newWorker = async (): Promise<WorkerProc> => {
    const w = spawnWorker(srv.address, queue, {}, ['--allow-path', dir]);
    workers.push(w);
    await w.ready;
    return w;
  };
  try {
    // The reference: the same curriculum, same overrides, nobody killed.
    const refJob = `chaos-ref-${opts.seed}`;
    let w = await newWorker();
    let t = Date.now();
    const reference = (await (await startJob(c, input(refJob), { taskQueue: queue })).result()) as CurriculumResult;
    const referenceSeconds = (Date.now() - t) / 1000;
    log(`chaos: reference run ${referenceSeconds.toFixed(1)} s`);

    // The chaos run.
    const job = `chaos-${opts.seed}`;
    const jobDir = path.join(runs, job);
    const marker = `${jobDir}"`; // training children of this job (their request JSON names the job folder)
    const lines = (stage: string): number[] => metricLines(metricsFile(stageDir(jobDir, stage)));
    const records: KillRecord[] = [];
    const killedAtMs: number[] = [];
    t = Date.now();
    const since = (): number => (Date.now() - t) / 1000;
    await startJob(c, input(job), { taskQueue: queue });
    let serverRestarts = 0;
    for (const [i, k] of plan.entries()) {
      const rec: KillRecord = { kind: k.kind, stage: k.stage, step: k.step, at: 0, workerPid: w.proc.pid };
      if (k.kind === 'step') await killAfterStep(k, w, jobDir, lines, release);
      else await killDuringWrite(k, stages[k.stageIndex]!, w, jobDir, marker, lines, rec, release);
      rec.at = since();
      killedAtMs.push(Date.now());
      rec.exitSignal = w.proc.signalCode;
      rec.lastReported = lines(k.stage).at(-1) ?? 0;
      records.push(rec);
      log(
        `chaos: kill ${i + 1}/${plan.length} at ${rec.at.toFixed(1)} s: ${k.kind} ${k.stage} step ${rec.step}${rec.duringWrite !== undefined ? (rec.duringWrite ? ', inside the checkpoint write' : ', after the write had finished') : ''}${rec.note ? ` (${rec.note})` : ''}`,
      );
      const killedAt = Date.now();
      await waitUntil('the orphaned training child to exit', () => trainingChildren(marker).length === 0, 15_000);
      w = await newWorker();
      rec.workerStartSeconds = (Date.now() - killedAt) / 1000;
      if (restartAfter.has(i)) {
        // Restart the server while the new worker trains: wait for a fresh metrics line first.
        const before = stages.map((s) => lines(s.name).length);
        await waitUntil('training to resume', () => stages.some((s, j) => lines(s.name).length > before[j]!), 300_000);
        held = trainingChildren(marker);
        for (const pid of held) signal(pid, 'SIGSTOP');
        await c.connection.close();
        await srv.stop();
        await sleep(1000);
        srv = await startDevServer({ dbFile: db, headless: true, port });
        c = await connect(srv.address);
        serverRestarts++;
        log(`chaos: Temporal server restarted at ${since().toFixed(1)} s`);
      }
    }
    release();
    const result = (await c.workflow.getHandle(job).result()) as CurriculumResult;
    const chaosSeconds = since();
    const completions = await trainShardCompletions(c, job);
    judgeKills(records, killedAtMs, completions);
    log(`chaos: chaos run ${chaosSeconds.toFixed(1)} s`);

    const verdicts: StageVerdict[] = stages.map((s) => {
      const mine = result.stages.find((r) => r.stage === s.name);
      const ref = reference.stages.find((r) => r.stage === s.name);
      const file = (d: string | undefined): string | undefined => (d ? path.join(d, 'model.safetensors') : undefined);
      const a = file(mine?.finalCheckpoint ?? finalDir(stageDir(jobDir, s.name)));
      const b = file(ref?.finalCheckpoint);
      const exists = (f: string | undefined): f is string => f !== undefined && fs.existsSync(f);
      const identical = exists(a) && exists(b) && fs.readFileSync(a).equals(fs.readFileSync(b));
      const { redone, missing } = redoneSteps(lines(s.name), s.steps);
      return {
        stage: s.name,
        identical,
        chaosSha256: exists(a) ? sha256File(a) : '(missing)',
        referenceSha256: exists(b) ? sha256File(b) : '(missing)',
        stepsRedone: redone,
        stepsMissing: missing,
      };
    });
    const report: ChaosReport = {
      seed: opts.seed,
      backend,
      killsPlanned: plan.length,
      killsSurvived: records.filter((r) => r.survived).length,
      writeKillsLanded: records.filter((r) => r.duringWrite).length,
      serverRestarts,
      stepsRedone: verdicts.reduce((a, v) => a + v.stepsRedone, 0),
      stages: verdicts,
      equal: verdicts.every((v) => v.identical),
      referenceSeconds,
      chaosSeconds,
      lostPerKillSeconds: records.length ? (chaosSeconds - referenceSeconds) / records.length : 0,
      kills: records,
      dir,
    };
    return report;
  } finally {
    release();
    for (const w of workers) await w.kill('SIGKILL');
    await c.connection.close().catch(() => {});
    await srv.stop();
  }
}

/** Sets each kill's `survived` from what was observed (see KillRecord.survived). */
export function judgeKills(
  records: KillRecord[],
  killedAtMs: number[],
  completions: { atMs: number; identity: string }[],
): void {
  records.forEach((rec, i) => {
    rec.survived =
      rec.exitSignal === 'SIGKILL' &&
      completions.some((x) => x.atMs > killedAtMs[i]! && !x.identity.startsWith(`${rec.workerPid}@`));
  });
}

/** trainShard completions of every run of the job (continue-as-new chains followed back): when, and by which worker. */
async function trainShardCompletions(c: Client, job: string): Promise<{ atMs: number; identity: string }[]> {
  const out: { atMs: number; identity: string }[] = [];
  let runId: string | undefined;
  for (;;) {
    const events = await historyEvents(c, job, runId);
    for (const e of events) {
      if (eventTypeName(e) !== 'EVENT_TYPE_ACTIVITY_TASK_COMPLETED') continue;
      const a = e.activityTaskCompletedEventAttributes;
      const scheduled = events.find((x) => Number(x.eventId) === Number(a?.scheduledEventId));
      if (scheduled?.activityTaskScheduledEventAttributes?.activityType?.name === 'trainShard')
        out.push({ atMs: eventMs(e), identity: a?.identity ?? '' });
    }
    runId = events[0]?.workflowExecutionStartedEventAttributes?.continuedExecutionRunId ?? undefined;
    if (!runId) return out;
  }
}

/** Waits until a new metrics line of the kill's stage reaches its step, then a seeded fraction of a step, then SIGKILLs the worker. */
async function killAfterStep(
  k: PlannedKill,
  w: WorkerProc,
  jobDir: string,
  lines: (stage: string) => number[],
  armed: () => void,
): Promise<void> {
  const seen = lines(k.stage).length;
  armed();
  await waitUntil(
    `${k.stage} step ${k.step}`,
    () =>
      lines(k.stage)
        .slice(seen)
        .some((s) => s >= k.step),
    600_000,
    20,
  );
  // A fraction of a step: of the fastest step so far (a stage's first step includes warm-up).
  const stepSeconds = Math.min(0.5, fastestStepSeconds(metricsFile(stageDir(jobDir, k.stage))) ?? 0.2);
  await sleep(k.frac * stepSeconds * 1000);
  await w.kill('SIGKILL');
}

function fastestStepSeconds(file: string): number | undefined {
  try {
    const times = fs
      .readFileSync(file, 'utf8')
      .split('\n')
      .filter(Boolean)
      .map((l) => (JSON.parse(l) as { step_time?: number }).step_time)
      .filter((t): t is number => typeof t === 'number');
    return times.length ? Math.min(...times) : undefined;
  } catch {
    return undefined;
  }
}

/**
 * SIGKILLs the worker and its training child together the moment the checkpoint's `.tmp-*`
 * folder appears (inotify, with a 2 ms poll as a fallback). If that checkpoint is already
 * complete when armed (training went on past it, e.g. while the server was restarted after the
 * previous kill), it aims at the stage's next checkpoint instead; if
 * there is none, or the write completes unseen, the kill happens anyway and is reported as such.
 */
async function killDuringWrite(
  k: PlannedKill,
  stage: { steps: number; interval: number },
  w: WorkerProc,
  jobDir: string,
  marker: string,
  lines: (stage: string) => number[],
  rec: KillRecord,
  armed: () => void,
): Promise<void> {
  const ck = checkpointsDir(stageDir(jobDir, k.stage));
  // A stage not started yet cannot start while training is held.
  if (!fs.existsSync(ck)) armed();
  await waitUntil(`${k.stage} checkpoints folder`, () => fs.existsSync(ck), 600_000, 20);
  const saved = (step: number): boolean => fs.existsSync(path.join(ck, stepDirName(step)));
  let step = k.step;
  if (saved(step)) {
    let next = step + 1;
    while (next <= stage.steps && ((next % stage.interval !== 0 && next !== stage.steps) || saved(next))) next++;
    if (next > stage.steps) {
      rec.note = 'checkpoint already saved when armed, and no later one in the stage; killed at the next step';
      const seen = lines(k.stage).length;
      // A stage that trained to its end before the kill was armed (a fast machine) gets no new step.
      const ended = (): boolean => lines(k.stage).includes(stage.steps);
      if (ended()) rec.note = 'the stage had trained to its end when armed; killed at once';
      armed();
      await waitUntil(`a new ${k.stage} step`, () => ended() || lines(k.stage).length > seen, 600_000, 20);
      await w.kill('SIGKILL');
      return;
    }
    rec.note = `step ${step} was already saved when armed; aimed at step ${next}`;
    step = next;
    rec.step = step;
  }
  const prefix = `.tmp-${stepDirName(step)}-`;
  const done = path.join(ck, stepDirName(step));
  let children = trainingChildren(marker);
  let tmpName: string | undefined;
  // A dead writer's leftover (an orphaned child exits before its rename and leaves its `.tmp-*`
  // folder behind) is not a write in progress: only folders that appear from now on, of a live pid.
  const stale = new Set(fs.readdirSync(ck).filter((n) => n.startsWith(prefix)));
  const live = (n: string): boolean => {
    const pid = Number(/-(\d+)-[0-9a-f]{8}$/.exec(n)?.[1]);
    try {
      if (!(pid > 0)) return false;
      process.kill(pid, 0);
      return true;
    } catch {
      return false;
    }
  };
  await new Promise<void>((resolve, reject) => {
    let finished = false;
    const check = (): void => {
      if (finished) return;
      let names: string[];
      try {
        names = fs.readdirSync(ck);
      } catch {
        return;
      }
      const tmp = names.find((n) => n.startsWith(prefix) && !stale.has(n) && live(n));
      if (tmp || names.includes(stepDirName(step))) {
        finished = true;
        // Both at once, before anything else: this is the moment.
        try {
          process.kill(w.proc.pid!, 'SIGKILL');
        } catch {
          /* already gone */
        }
        for (const pid of children) {
          try {
            process.kill(pid, 'SIGKILL');
          } catch {
            /* already gone */
          }
        }
        tmpName = tmp;
        cleanup();
        resolve();
      }
    };
    const watcher = fs.watch(ck, () => check());
    const poll = setInterval(check, 2);
    armed();
    const refresh = setInterval(() => {
      children = trainingChildren(marker);
    }, 100);
    const timeout = setTimeout(() => {
      cleanup();
      reject(new Error(`timed out waiting for the write of ${k.stage} ${stepDirName(step)}`));
    }, 600_000);
    const cleanup = (): void => {
      watcher.close();
      clearInterval(poll);
      clearInterval(refresh);
      clearTimeout(timeout);
    };
    check();
  });
  await w.kill('SIGKILL');
  rec.duringWrite = tmpName !== undefined && fs.existsSync(path.join(ck, tmpName)) && !fs.existsSync(done);
  if (tmpName === undefined) rec.note = 'the write finished before it was seen';
}

/** Sends a signal to a process that may be gone already. */
function signal(pid: number, sig: NodeJS.Signals): void {
  try {
    process.kill(pid, sig);
  } catch {
    /* already gone */
  }
}

async function waitUntil(what: string, fn: () => boolean, timeoutMs: number, everyMs = 50): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!fn()) {
    if (Date.now() > deadline) throw new Error(`chaos: timed out after ${timeoutMs / 1000} s waiting for ${what}`);
    await sleep(everyMs);
  }
}

export function formatReport(r: ChaosReport): string {
  const out: string[] = [];
  out.push(`Chaos run, seed ${r.seed}, backend ${r.backend} (${r.dir})`);
  out.push(
    `kills survived:         ${r.killsSurvived} of ${r.killsPlanned} (${r.writeKillsLanded} inside a checkpoint write)`,
  );
  out.push(`server restarts:        ${r.serverRestarts}`);
  out.push(`steps redone:           ${r.stepsRedone}`);
  out.push(`stage  final model.safetensors vs uninterrupted run   steps redone  steps missing`);
  for (const v of r.stages) {
    out.push(
      `${v.stage.padEnd(6)} ${(v.identical ? 'identical' : 'DIFFERENT').padEnd(10)} ${v.chaosSha256.slice(0, 16)} / ${v.referenceSha256.slice(0, 16)}   ${String(v.stepsRedone).padStart(12)}  ${v.stepsMissing.length ? v.stepsMissing.join(',') : 'none'}`,
    );
  }
  for (const [i, k] of r.kills.entries()) {
    const where =
      k.duringWrite === undefined ? '' : k.duringWrite ? ', inside the checkpoint write' : ', after the write';
    out.push(
      `  kill ${String(i + 1).padStart(2)} at ${k.at.toFixed(1).padStart(6)} s: ${k.kind.padEnd(5)} ${k.stage} step ${k.step}${where} (last step reported ${k.lastReported ?? '?'}); fresh worker polling ${k.workerStartSeconds?.toFixed(1) ?? '?'} s later${k.note ? ` (${k.note})` : ''}${k.survived ? '' : '; NOT survived'}`,
    );
  }
  out.push(
    `equality:               ${r.equal ? 'EQUAL: every stage final is byte-identical to the uninterrupted run' : 'NOT EQUAL'}`,
  );
  out.push(`uninterrupted run:      ${r.referenceSeconds.toFixed(1)} s`);
  out.push(`chaos run:              ${r.chaosSeconds.toFixed(1)} s`);
  out.push(
    `time lost per kill:     ${r.lostPerKillSeconds.toFixed(1)} s ((chaos - uninterrupted) / kills, server restart included)`,
  );
  return out.join('\n');
}

function flag(args: string[], name: string): string | undefined {
  const i = args.findIndex((a) => a === `--${name}` || a.startsWith(`--${name}=`));
  if (i < 0) return undefined;
  const a = args[i]!;
  return a.includes('=') ? a.slice(a.indexOf('=') + 1) : args[i + 1];
}

function intArg(v: string | undefined, what: string, dflt: number): number {
  if (v === undefined || v === '') return dflt;
  const n = Number(v);
  if (!Number.isInteger(n) || n < 0)
    throw new Error(`${what} must be a non-negative integer, got ${JSON.stringify(v)}`);
  return n;
}

async function main(): Promise<void> {
  const args = process.argv.slice(2);
  const env = process.env;
  const kills = intArg(flag(args, 'kills') ?? env.CHAOS_KILLS, '--kills / CHAOS_KILLS', 10);
  const writes = flag(args, 'write-kills') ?? env.CHAOS_WRITE_KILLS;
  const keep = args.includes('--keep') || env.CHAOS_KEEP === '1';
  const report = await runChaos({
    seed: intArg(flag(args, 'seed') ?? env.CHAOS_SEED, '--seed / CHAOS_SEED', 1),
    kills,
    ...(writes !== undefined ? { writeKills: intArg(writes, '--write-kills / CHAOS_WRITE_KILLS', 0) } : {}),
    serverRestarts: intArg(flag(args, 'server-restarts') ?? env.CHAOS_SERVER_RESTARTS, '--server-restarts', 1),
    ...((flag(args, 'until') ?? env.CHAOS_UNTIL) ? { until: (flag(args, 'until') ?? env.CHAOS_UNTIL)! } : {}),
    backend: flag(args, 'backend') ?? env.CHAOS_BACKEND ?? 'wasm',
    heartbeatTimeoutSeconds: Number(flag(args, 'heartbeat-timeout') ?? env.CHAOS_HEARTBEAT_TIMEOUT ?? 5),
  });
  process.stdout.write(`${formatReport(report)}\n`);
  const ok =
    report.equal &&
    report.killsSurvived === report.killsPlanned &&
    report.stages.every((v) => v.stepsMissing.length === 0);
  if (!ok) process.exitCode = 1;
  else if (!keep) fs.rmSync(report.dir, { recursive: true, force: true });
}

if (require.main === module) {
  main().then(
    () => process.exit(process.exitCode ?? 0),
    (e: unknown) => {
      process.stderr.write(`chaos failed: ${(e as Error).stack ?? String(e)}\n`);
      process.exit(1);
    },
  );
}
