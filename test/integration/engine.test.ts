/**
 * The command engine through the whole workflow, with a real dev server and worker processes,
 * locally: this project's own trainer run as an external one (`engine.preset = "ours"`: the
 * engine runner starts `ttt-curriculum train` as a program of its own), and worker-side presets
 * from `worker --engine-dir`.
 *
 *   - the tiny curriculum, cut into shards, with finals byte-identical to the built-in engine's;
 *   - pause, resume and cancel: the trainer saves on SIGUSR1, or (a preset with stop = "kill") is
 *     killed and the stage resumes from its last complete checkpoint;
 *   - the worker SIGKILLed mid-stage: its trainer dies with it, another worker resumes the stage;
 *   - a trainer that fails at every start: retried, then a non-retryable EngineError.
 *
 * Under Slurm: engine-slurm.test.ts. A real torchrun (PyTorch DDP on 2 CPU processes) running a
 * trainer with TTT-Video-DiT's command line, config file and log lines as a preset through the
 * workflow: torchrun-engine.test.ts.
 */
import assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { after, before, test } from 'node:test';
import { type Client, WorkflowFailedError } from '@temporalio/client';
import { ActivityFailure, ApplicationFailure } from '@temporalio/common';
import { latestCompleteCheckpoint } from '../../src/checkpoint/store';
import { StageEngineFiles } from '../../src/engine/files';
import { pauseSignal, progressQuery, resumeSignal, startJob } from '../../src/temporal/client';
import type { DevServer } from '../../src/temporal/devserver';
import type { CurriculumResult } from '../../src/shared/types';
import {
  client,
  eventTypeName,
  freezeTrainingWhen,
  logMark,
  historyEvents,
  metricSteps,
  processesWhere,
  progressSignals,
  server,
  spawnWorker,
  tmpDir,
  waitFor,
  type WorkerProc,
} from '../helpers';

const dir = tmpDir('engine');
const runs = path.join(dir, 'runs');
const engines = path.join(dir, 'engines');
const queue = 'engine';
let srv: DevServer;
let worker: WorkerProc;
let c: Client;
const t0 = Date.now();

/** Worker-side presets: the "ours" trainer stopped by a kill, and a trainer that cannot start. */
function writePresets(): void {
  fs.mkdirSync(engines, { recursive: true });
  const ours = `command = ["ttt-curriculum", "train", "{config}", "--job.exp_name={exp_name}", "--job.dump_folder={dump_folder}", "--checkpoint.init_state_dir={init}"]\ncheckpoint_layout = "ours"\n`;
  fs.writeFileSync(path.join(engines, 'ours-kill.toml'), `kind = "command"\n${ours}stop = "kill"\n`);
  fs.writeFileSync(
    path.join(engines, 'broken.toml'),
    `kind = "command"\ncommand = ["ttt-curriculum", "train", "{config}", "--job.exp_name={exp_name}", "--job.dump_folder={dump_folder}", "--training.dataset_path=/nonexistent/data"]\ncheckpoint_layout = "ours"\n`,
  );
}

const workerArgs = (): string[] => ['--allow-path', dir, '--engine-dir', engines];

before(async () => {
  writePresets();
  srv = await server(path.join(dir, 'temporal.sqlite'));
  worker = spawnWorker(srv.address, queue, {}, workerArgs());
  await worker.ready;
  c = await client(srv.address);
});

after(async () => {
  await c?.connection.close();
  await worker?.kill('SIGTERM');
  await srv?.stop();
  process.stdout.write(`# engine tests: ${((Date.now() - t0) / 1000).toFixed(1)} s in all\n`);
});

function input(jobName: string, set: Record<string, unknown>, until = '3s') {
  return {
    jobName,
    curriculum: 'configs/curriculum/tiny.toml',
    until,
    set: { 'job.dump_folder': runs, 'training.global_batch_size': 1, ...set },
  };
}

const stageDir = (job: string, stage: string): string => path.join(runs, job, stage);

/** Pids of live trainers of a job: `ttt-curriculum train` processes reading a config under its folder. */
function trainers(job: string): number[] {
  const marker = `${path.join(runs, job)}/`;
  return processesWhere((cmdline) => {
    const cmd = cmdline.split('\0');
    return cmd.includes('train') && cmd.some((a) => a.startsWith(marker));
  });
}

async function trained(job: string, stage: string, n: number): Promise<void> {
  await waitFor(
    `${job} ${stage}: ${n} steps`,
    () => (metricSteps(stageDir(job, stage)).length >= n ? true : undefined),
    300_000,
    50,
  );
}

async function failure(h: { result(): Promise<unknown> }): Promise<ApplicationFailure> {
  const err = await h.result().then(
    () => assert.fail('the job should fail'),
    (e: unknown) => e,
  );
  assert.ok(err instanceof WorkflowFailedError, String(err));
  assert.ok(err.cause instanceof ActivityFailure, String(err.cause));
  assert.ok(err.cause.cause instanceof ApplicationFailure, String(err.cause.cause));
  return err.cause.cause;
}

test('the tiny curriculum with ttt-curriculum train as an external engine, in shards: every final byte-identical to the built-in engine', async (t) => {
  const set = { 'training.steps': 8, 'checkpoint.interval': 2, 'shard.progress_seconds': 0.5 };
  const t1 = Date.now();
  const stages = ['3s', '9s', '18s', '30s', '63s'];
  // The worker sees the trainer's steps every 250 ms; a tiny step takes about 12 ms, so a stage's
  // 8 steps could all run before the worker saw 3. Each stage's first trainer run is held after
  // its third step (frozen, on its metrics line) until the worker has signalled it to stop.
  const held = (async () => {
    for (const stage of stages) {
      const stop = logMark(worker, 'engine: stopping the trainer');
      const frozen = await freezeTrainingWhen(
        stageDir('engine-ours', stage),
        () => trainers('engine-ours'),
        (last) => last >= 3 && last < 8,
      );
      await stop.next(`the worker stops the ${stage} trainer at the shard's bound`);
      process.kill(frozen.pid, 'SIGCONT');
    }
  })();
  const [external, builtin] = (await Promise.all([
    startJob(c, input('engine-ours', { ...set, 'engine.preset': 'ours', 'shard.max_steps': 3 }, '63s'), {
      taskQueue: queue,
    }).then((h) => h.result()),
    startJob(c, input('engine-builtin', set, '63s'), { taskQueue: queue }).then((h) => h.result()),
    held,
  ])) as [CurriculumResult, CurriculumResult, undefined];
  assert.deepEqual(
    external.stages.map((s) => s.stage),
    stages,
  );
  for (const [i, s] of external.stages.entries()) {
    assert.equal(
      s.modelSha256,
      builtin.stages[i]!.modelSha256,
      `${s.stage}: the final differs from the built-in engine's`,
    );
    assert.equal(s.finalCheckpoint, path.join(runs, 'engine-ours', s.stage, 'final'));
    assert.deepEqual([s.firstLoss, s.lastLoss], [builtin.stages[i]!.firstLoss, builtin.stages[i]!.lastLoss]);
    const runsLog = new StageEngineFiles(stageDir('engine-ours', s.stage)).recordedRuns();
    // shard.max_steps = 3 stops the trainer with SIGUSR1 once its metrics show 3 more steps; it may take a
    // step or two more before it sees the signal, so 8 steps take 2 or 3 runs.
    assert.ok(runsLog.length >= 2, `${s.stage}: the trainer was stopped at the shard's bound and resumed`);
    assert.ok(
      runsLog.slice(0, -1).every((r) => r.stopped && r.exit === '0'),
      `${s.stage}: each saved and ended`,
    );
    assert.equal(runsLog.at(-1)!.endStep, 8);
  }
  // Progress reached the workflow from the external trainer's metrics.jsonl, labelled with the engine.
  const signals = await progressSignals(c, 'engine-ours');
  assert.ok(signals.length > 0, 'shardProgress signals');
  assert.ok(signals.every((p) => p.backend === 'ours' && p.device === '1 node x 1 device'));
  t.diagnostic(
    `5 stages x 8 steps in ${((Date.now() - t1) / 1000).toFixed(1)} s; finals ${external.stages.map((s) => `${s.stage} ${s.modelSha256.slice(0, 12)}`).join(', ')}`,
  );
});

test('pause, resume and cancel an external trainer that saves on SIGUSR1: each stop saves the last trained step', async (t) => {
  const job = 'engine-controls';
  const h = await startJob(
    c,
    input(job, {
      'engine.preset': 'ours',
      'training.steps': 400,
      'checkpoint.interval': 100,
      'shard.max_seconds': 600,
    }),
    { taskQueue: queue },
  );
  const sDir = stageDir(job, '3s');
  await trained(job, '3s', 3);
  assert.equal(trainers(job).length, 1, 'one trainer runs');
  await h.signal(pauseSignal);
  await waitFor('paused', async () => ((await h.query(progressQuery)).state === 'paused' ? true : undefined), 120_000);
  assert.deepEqual(trainers(job), [], 'no trainer while paused');
  const paused = metricSteps(sDir);
  const ck = latestCompleteCheckpoint(path.join(sDir, 'checkpoints'));
  assert.equal(ck?.state.step, paused.at(-1), 'the pause saved the last trained step');
  await h.signal(resumeSignal);
  await trained(job, '3s', paused.length + 2);
  await h.cancel();
  await assert.rejects(h.result(), (e: unknown) => e instanceof WorkflowFailedError);
  assert.equal((await h.describe()).status.name, 'CANCELLED');
  await waitFor('the trainer to end', () => (trainers(job).length === 0 ? true : undefined), 60_000, 100);
  const done = metricSteps(sDir);
  const ck2 = latestCompleteCheckpoint(path.join(sDir, 'checkpoints'));
  assert.equal(ck2?.state.step, done.at(-1), 'the cancel saved the last trained step');
  const runsLog = new StageEngineFiles(sDir).recordedRuns();
  assert.ok(
    runsLog.every((r) => r.exit === '0'),
    'each run ended by itself after its save (exit code 0)',
  );
  t.diagnostic(`paused at step ${paused.at(-1)}, cancelled at step ${done.at(-1)}`);
});

test('a worker-side preset (--engine-dir) that stops with a kill: pause kills the trainer, resume continues from its last complete checkpoint', async (t) => {
  const job = 'engine-kill';
  const steps = 24;
  const interval = 5;
  const h = await startJob(
    c,
    input(job, { 'engine.preset': 'ours-kill', 'training.steps': steps, 'checkpoint.interval': interval }),
    { taskQueue: queue },
  );
  const sDir = stageDir(job, '3s');
  // Past a checkpoint and not at one: the kill loses the steps since the last one. The trainer is
  // frozen there until the worker has stopped it, so that the pause lands mid-stage however fast
  // the remaining steps would run.
  const frozen = await freezeTrainingWhen(
    sDir,
    () => trainers(job),
    (last) => last >= 7 && last % interval !== 0 && last < steps,
  );
  const stop = logMark(worker, 'engine: stopping the trainer');
  await h.signal(pauseSignal);
  await stop.next('the worker stops the frozen trainer');
  process.kill(frozen.pid, 'SIGCONT');
  await waitFor('paused', async () => ((await h.query(progressQuery)).state === 'paused' ? true : undefined), 120_000);
  assert.deepEqual(trainers(job), []);
  const atPause = metricSteps(sDir);
  const ck = latestCompleteCheckpoint(path.join(sDir, 'checkpoints'))!;
  assert.equal(ck.state.step % interval, 0, 'no save on the stop: the last complete checkpoint is an interval one');
  assert.ok(ck.state.step <= atPause.at(-1)!);
  const runsLog = new StageEngineFiles(sDir).recordedRuns();
  assert.equal(runsLog.at(-1)!.exit, 'SIGTERM', 'terminated, not saved');
  await h.signal(resumeSignal);
  const result = (await h.result()) as CurriculumResult;
  assert.equal(result.stages[0]!.steps, steps);
  const all = metricSteps(sDir);
  assert.deepEqual(
    [...new Set(all)].sort((a, b) => a - b),
    Array.from({ length: steps }, (_, i) => i + 1),
  );
  assert.equal(
    all[atPause.length],
    ck.state.step + 1,
    'the resumed trainer went on after the last complete checkpoint',
  );
  t.diagnostic(
    `paused at step ${atPause.at(-1)}, resumed from step ${ck.state.step}; ${all.length - steps} steps redone`,
  );
});

test('the worker SIGKILLed while its external trainer runs: the trainer dies with it; another worker resumes the stage', async (t) => {
  const job = 'engine-crash';
  const q = 'engine-crash';
  const steps = 30;
  const a = spawnWorker(srv.address, q, {}, workerArgs());
  let b: WorkerProc | undefined;
  try {
    await a.ready;
    const h = await startJob(
      c,
      input(job, {
        'engine.preset': 'ours',
        'training.steps': steps,
        'checkpoint.interval': 5,
        'shard.heartbeat_timeout_seconds': 4,
      }),
      { taskQueue: q },
    );
    const sDir = stageDir(job, '3s');
    await trained(job, '3s', 7);
    const [trainer] = trainers(job);
    assert.ok(trainer, 'the trainer runs');
    await a.kill('SIGKILL');
    await waitFor(
      'the orphaned trainer to be killed',
      () => (trainers(job).includes(trainer) ? undefined : true),
      60_000,
      50,
    );
    const atKill = metricSteps(sDir).length;
    b = spawnWorker(srv.address, q, {}, workerArgs());
    await b.ready;
    const result = (await h.result()) as CurriculumResult;
    assert.equal(result.stages[0]!.steps, steps);
    const all = metricSteps(sDir);
    assert.deepEqual(
      [...new Set(all)].sort((x, y) => x - y),
      Array.from({ length: steps }, (_, i) => i + 1),
    );
    assert.ok(all.length - steps <= 5, `at most checkpoint.interval steps redone (${all.length - steps})`);
    t.diagnostic(`killed the worker at ${atKill} steps; ${all.length - steps} steps redone by the next worker`);
  } finally {
    await a.kill();
    await b?.kill('SIGTERM');
  }
});

test('an external trainer that fails at every start: retried, then a non-retryable EngineError with its output', async (t) => {
  const job = 'engine-broken';
  const h = await startJob(c, input(job, { 'engine.preset': 'broken' }), { taskQueue: queue });
  const app = await failure(h);
  assert.equal(app.type, 'EngineError');
  assert.equal(app.nonRetryable, true);
  assert.match(
    app.message,
    /the last 3 runs of engine broken for stage 3s ended without training a step or reporting a result \(exits: 1, 1, 1\)/,
  );
  assert.match(app.message, /training\.dataset_path = "\/nonexistent\/data": no such directory/);
  const attempts = (await historyEvents(c, job))
    .filter((e) => eventTypeName(e) === 'EVENT_TYPE_ACTIVITY_TASK_STARTED')
    .map((e) => e.activityTaskStartedEventAttributes?.attempt ?? 0);
  assert.equal(Math.max(...attempts), 4, 'three failed starts, and the attempt that refused a fourth');
  t.diagnostic(`trainShard failed for good at attempt ${Math.max(...attempts)}`);
});
