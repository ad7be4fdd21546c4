/** Test helpers: temporary folders, a real Temporal dev server, worker processes. */
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { createHash } from 'node:crypto';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { after, before } from 'node:test';
import { Client, Connection } from '@temporalio/client';
import { defaultPayloadConverter } from '@temporalio/common';
import { temporal } from '@temporalio/proto';
import type { ShardProgress } from '../src/shared/types';
import { startDevServer, type DevServer } from '../src/temporal/devserver';
import { isValidationLine } from '../src/train/metrics';

export const ROOT = path.resolve(__dirname, '..', '..');
export const CLI = path.join(ROOT, 'dist', 'src', 'cli', 'main.js');
export const TINY = path.join(ROOT, 'configs', 'curriculum', 'tiny.toml');

export function tmpDir(prefix: string): string {
  return fs.mkdtempSync(path.join(os.tmpdir(), `ttt-${prefix}-`));
}

export async function server(dbFile: string, port?: number): Promise<DevServer> {
  return startDevServer({ dbFile, headless: true, ...(port ? { port } : {}) });
}

export async function client(address: string): Promise<Client> {
  const connection = await Connection.connect({ address });
  return new Client({ connection });
}

export interface WorkerProc {
  proc: ChildProcess;
  /** Resolves when the worker logged that it started polling. */
  ready: Promise<void>;
  stderr: () => string;
  kill(sig?: NodeJS.Signals): Promise<void>;
}

/**
 * Starts `ttt-curriculum worker` in its own process; `address` null: from the environment
 * (TEMPORAL_ADDRESS, the profile). Job inputs may reach only its working directory (the
 * repository) unless `args` has --allow-path (or `env` TTT_ALLOW_PATHS).
 */
export function spawnWorker(
  address: string | null,
  taskQueue: string,
  env: NodeJS.ProcessEnv = {},
  args: string[] = [],
): WorkerProc {
  const at = address === null ? [] : ['--address', address];
  const proc = spawn(process.execPath, [CLI, 'worker', ...at, '--task-queue', taskQueue, ...args], {
    cwd: ROOT,
    env: { ...process.env, TTT_LOG_LEVEL: 'info', TTT_LOG_PRETTY: '0', ...env },
    stdio: ['ignore', 'ignore', 'pipe'],
  });
  let err = '';
  const ready = new Promise<void>((resolve, reject) => {
    proc.stderr!.on('data', (b: Buffer) => {
      err += b.toString();
      if (err.includes('"worker started"')) resolve();
    });
    proc.once('exit', (code) => reject(new Error(`worker exited (${code}) before it started: ${err.slice(-2000)}`)));
  });
  ready.catch(() => {});
  return {
    proc,
    ready,
    stderr: () => err,
    kill: (sig = 'SIGKILL') =>
      new Promise<void>((resolve) => {
        if (proc.exitCode !== null || proc.signalCode !== null) return resolve();
        proc.once('exit', () => resolve());
        proc.kill(sig);
      }),
  };
}

/** A dev server, one worker and a client shared by the tests of one file (node:test before/after hooks). */
export interface SharedServer {
  dir: string;
  runs: string;
  queue: string;
  srv: DevServer;
  worker: WorkerProc;
  c: Client;
}

export function sharedServer(prefix: string, queue: string, workerArgs: string[] = []): SharedServer {
  const dir = tmpDir(prefix);
  const env = { dir, runs: path.join(dir, 'runs'), queue } as SharedServer;
  before(async () => {
    env.srv = await server(path.join(dir, 'temporal.sqlite'));
    // Job inputs write under the test's folder: allow it (the default is the working directory).
    env.worker = spawnWorker(env.srv.address, queue, {}, ['--allow-path', dir, ...workerArgs]);
    await env.worker.ready;
    env.c = await client(env.srv.address);
  });
  after(async () => {
    await env.c?.connection.close();
    await env.worker?.kill('SIGTERM');
    await env.srv?.stop();
  });
  return env;
}

/**
 * A place in a worker's log: `next(what)` waits until `line` appears in it once more than it
 * had when the mark was taken (an event, however long the wait).
 */
export function logMark(w: WorkerProc, line: string): { next(what: string): Promise<true> } {
  const count = (): number => w.stderr().split(line).length - 1;
  const before = count();
  return { next: (what) => waitFor(what, () => (count() > before ? true : undefined)) };
}

export async function waitFor<T>(
  what: string,
  fn: () => Promise<T | undefined> | T | undefined,
  timeoutMs = 120_000,
  everyMs = 250,
): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const v = await fn();
    if (v !== undefined && v !== null && v !== false) return v;
    if (Date.now() > deadline) throw new Error(`timed out after ${timeoutMs / 1000}s waiting for ${what}`);
    await new Promise((r) => setTimeout(r, everyMs));
  }
}

/** The lines of a stage's metrics.jsonl, parsed. */
function metricLines(stageDir: string): Record<string, unknown>[] {
  const f = path.join(stageDir, 'metrics.jsonl');
  if (!fs.existsSync(f)) return [];
  return fs
    .readFileSync(f, 'utf8')
    .split('\n')
    .filter(Boolean)
    .map((l) => JSON.parse(l) as Record<string, unknown>);
}

/** Step entries of a stage's metrics.jsonl (its step lines; validation lines are left out). */
export function metricSteps(stageDir: string): number[] {
  return metricLines(stageDir)
    .filter((l) => !isValidationLine(l))
    .map((l) => l.step as number);
}

/** The validation lines of a stage's metrics.jsonl: [step, val_loss] in file order. */
export function metricValidation(stageDir: string): [number, number][] {
  return metricLines(stageDir)
    .filter(isValidationLine)
    .map((l) => [l.step, l.val_loss] as [number, number]);
}

/**
 * Pids of live processes whose command line (its arguments joined by NUL, as /proc has it) `match`
 * accepts; `match` may read more of /proc/<pid> (a process that ends meanwhile is left out).
 */
export function processesWhere(match: (cmdline: string, pid: string) => boolean): number[] {
  const out: number[] = [];
  for (const pid of fs.readdirSync('/proc').filter((p) => /^\d+$/.test(p))) {
    try {
      if (match(fs.readFileSync(`/proc/${pid}/cmdline`, 'utf8'), pid)) out.push(Number(pid));
    } catch {
      /* gone */
    }
  }
  return out;
}

/** Pids of live training children (child.js) whose command line mentions `marker`. */
export function trainingChildren(marker: string): number[] {
  return processesWhere((cmd) => cmd.includes('child.js') && cmd.includes(marker));
}

/** Events of a workflow's history by type name. */
export async function historyEvents(
  c: Client,
  workflowId: string,
  runId?: string,
): Promise<temporal.api.history.v1.IHistoryEvent[]> {
  const h = await c.workflow.getHandle(workflowId, runId).fetchHistory();
  return h.events ?? [];
}

export function eventTypeName(e: temporal.api.history.v1.IHistoryEvent): string {
  return temporal.api.enums.v1.EventType[e.eventType ?? 0] ?? String(e.eventType);
}

/** The shardProgress signals a job's workflow received, in order. */
export async function progressSignals(c: Client, workflowId: string): Promise<ShardProgress[]> {
  return (await historyEvents(c, workflowId)).flatMap((e) => {
    const a = e.workflowExecutionSignaledEventAttributes;
    if (a?.signalName !== 'shardProgress') return [];
    return [defaultPayloadConverter.fromPayload<ShardProgress>(a.input!.payloads![0]! as never)];
  });
}

/**
 * The Python that has numpy + safetensors (scripts/ensure-python.sh installs them into
 * .tools/venv; TTT_PYTHON overrides). The interop tests require it: CI installs it.
 */
export function pythonWithSafetensors(): string {
  const py = process.env.TTT_PYTHON ?? path.join(ROOT, '.tools', 'venv', 'bin', 'python');
  const r = spawnSync(py, ['-c', 'import numpy, safetensors.numpy'], { encoding: 'utf8' });
  if (r.status !== 0)
    throw new Error(
      `${py} cannot import numpy and safetensors (${r.error?.message ?? r.stderr.trim().split('\n').pop()}): run bash scripts/ensure-python.sh`,
    );
  return py;
}

/**
 * The Python that has torch and diffusers 0.30.3 (scripts/ensure-torch.sh: a venv in
 * .tools/torch-venv on the system's torch; TTT_TORCH_PYTHON overrides). The tests that build
 * their CogVideoX fixture with diffusers, or write a dataset with torch, require it: CI installs it.
 */
export function pythonWithTorch(): string {
  const py = process.env.TTT_TORCH_PYTHON ?? path.join(ROOT, '.tools', 'torch-venv', 'bin', 'python');
  if (!fs.existsSync(py))
    throw new Error(
      `${py} does not exist: install torch (Debian: apt-get install python3-torch python3-venv), then run bash scripts/ensure-torch.sh`,
    );
  return py;
}

/**
 * test/fixtures/ddp_train.py: a small PyTorch DDP trainer with TTT-Video-DiT's command line, config
 * file and log lines, and checkpoints of ours; run under torchrun with pythonWithTorch().
 */
export const DDP_FIXTURE = path.join(ROOT, 'test', 'fixtures', 'ddp_train.py');

/**
 * The pid of rank `rank` of a run of DDP_FIXTURE whose command line mentions `marker`, from /proc
 * (torchrun sets RANK in each rank's environment): the rank's own "pid" line may reach torchrun's
 * copied output after other ranks' lines. Throws when there is none.
 */
export function ddpRankPid(marker: string, rank: number): number {
  const [pid] = processesWhere(
    (cmd, p) =>
      cmd.includes(DDP_FIXTURE) &&
      cmd.includes(marker) &&
      fs.readFileSync(`/proc/${p}/environ`, 'utf8').split('\0').includes(`RANK=${rank}`),
  );
  if (pid === undefined) throw new Error(`no rank ${rank} of a ${DDP_FIXTURE} run that mentions ${marker}`);
  return pid;
}

/** Runs a script of test/python with that Python (default: the one with safetensors + numpy); returns its JSON output. */
export function runPython<T>(script: string, args: string[], python = pythonWithSafetensors()): T {
  const r = spawnSync(python, [path.join(ROOT, 'test', 'python', script), ...args], {
    encoding: 'utf8',
    maxBuffer: 64 << 20,
  });
  if (r.status !== 0) throw new Error(`python ${script} failed (${r.status}): ${r.stderr}`);
  return JSON.parse(r.stdout) as T;
}

/** Milliseconds since the epoch of a history event. */
export function eventMs(e: temporal.api.history.v1.IHistoryEvent): number {
  const t = e.eventTime;
  return Number(t?.seconds ?? 0) * 1000 + Math.floor((t?.nanos ?? 0) / 1e6);
}

/** Activity type names of a history's ActivityTaskScheduled events, in order. */
export function scheduledActivities(events: temporal.api.history.v1.IHistoryEvent[]): string[] {
  return events
    .filter((e) => eventTypeName(e) === 'EVENT_TYPE_ACTIVITY_TASK_SCHEDULED')
    .map((e) => e.activityTaskScheduledEventAttributes?.activityType?.name ?? '?');
}

export function sha256File(file: string): string {
  return createHash('sha256').update(fs.readFileSync(file)).digest('hex');
}

/**
 * Runs `fn` while watching `dir` (inotify through fs.watch) and returns the names of the entries
 * written, created, renamed or removed in it meanwhile. Not sampled: once `fn` is done, a sentinel
 * file is written, and since inotify keeps its events in order, every earlier event has been seen
 * when the sentinel's arrives.
 */
export async function writesDuring<T>(dir: string, fn: () => Promise<T>): Promise<{ result: T; writes: string[] }> {
  const sentinel = `.writes-during-sentinel-${process.pid}`;
  const seen: string[] = [];
  let sawSentinel: () => void = () => {};
  const sentinelSeen = new Promise<void>((resolve) => (sawSentinel = resolve));
  const watcher = fs.watch(dir, (_kind, name) => {
    if (name === sentinel) sawSentinel();
    else seen.push(String(name));
  });
  const ino = fs.statSync(dir).ino;
  try {
    const result = await fn();
    // A folder removed or replaced (a new one renamed into its place) is a write of its own; the
    // sentinel would land in the new folder, unseen by this watch.
    if (!fs.existsSync(dir) || fs.statSync(dir).ino !== ino)
      return { result, writes: [...new Set(seen), '(the folder itself was replaced)'] };
    fs.writeFileSync(path.join(dir, sentinel), '');
    await sentinelSeen;
    return { result, writes: [...new Set(seen)] };
  } finally {
    watcher.close();
    fs.rmSync(path.join(dir, sentinel), { force: true });
  }
}

/**
 * Resolves on each append to a stage's metrics.jsonl, event-driven (inotify on the stage folder,
 * created by then or watched from its parent). Returns the steps in the file.
 */
async function nextMetricsChange(stageDir: string, seen: number): Promise<number[]> {
  for (;;) {
    const steps = metricSteps(stageDir);
    if (steps.length > seen) return steps;
    const watched = fs.existsSync(stageDir) ? stageDir : path.dirname(stageDir);
    fs.mkdirSync(watched, { recursive: true });
    await new Promise<void>((resolve) => {
      const w = fs.watch(watched, () => {
        w.close();
        resolve();
      });
      // The line may have landed between the read above and the watch.
      if (metricSteps(stageDir).length > seen) {
        w.close();
        resolve();
      }
    });
  }
}

/**
 * Freezes the job's training child (SIGSTOP) at the first metrics line that satisfies `when`,
 * triggered by the line itself (inotify), not by a polling interval. Once stopped, the file is
 * read again: the child may have gone on a little between the line and the stop, so `when` is
 * checked on what the stopped child has really written; if it no longer holds, the child is
 * continued and the next line is awaited. Returns the stopped child's pid and its last step; the
 * caller SIGCONTs or kills it.
 */
export async function freezeTrainingWhen(
  stageDir: string,
  marker: string | (() => number[]),
  when: (lastStep: number) => boolean,
  hangGuardMs = 600_000,
): Promise<{ pid: number; last: number }> {
  let seen = 0;
  const deadline = Date.now() + hangGuardMs;
  for (;;) {
    // A hang guard, not a speed claim: training that never reaches the line fails here.
    const steps = await Promise.race([
      nextMetricsChange(stageDir, seen),
      new Promise<never>((_, reject) =>
        setTimeout(
          () => reject(new Error(`no metrics line of ${stageDir} satisfied the freeze condition`)),
          Math.max(0, deadline - Date.now()),
        ).unref(),
      ),
    ]);
    seen = steps.length;
    if (!when(steps[steps.length - 1]!)) continue;
    const pids = typeof marker === 'string' ? trainingChildren(marker) : marker();
    if (pids.length !== 1) continue;
    process.kill(pids[0]!, 'SIGSTOP');
    const now = metricSteps(stageDir);
    const last = now[now.length - 1]!;
    if (when(last)) return { pid: pids[0]!, last };
    seen = now.length;
    process.kill(pids[0]!, 'SIGCONT');
  }
}

/** The largest |a - b| and the largest |b| (b the reference): for tolerances relative to a tensor's scale. */
export function maxDiff(a: ArrayLike<number>, b: ArrayLike<number>): { diff: number; scale: number } {
  let diff = 0;
  let scale = 0;
  for (let j = 0; j < b.length; j++) {
    scale = Math.max(scale, Math.abs(b[j]!));
    diff = Math.max(diff, Math.abs(a[j]! - b[j]!));
  }
  return { diff, scale };
}
