/**
 * Shards on a real one-node Slurm cluster (test/slurm.ts) with a real dev server and workers:
 * the tiny curriculum byte-identical to a local run; a worker SIGKILLed while its Slurm job
 * trains (the next worker re-attaches: one job per shard, none overlapping, no step missing);
 * a job scancelled from outside (resubmitted, completes); a time limit shorter than the stage
 * (Slurm's USR1 warning: the job saves, the stage comes back in a new job and completes);
 * pause, resume and cancel through Slurm (with the job in `status --json`); an unknown
 * partition and a broken setup line (non-retryable, with Slurm's text and the job's output).
 */
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { after, before, test } from 'node:test';
import { type Client, WorkflowFailedError } from '@temporalio/client';
import { ActivityFailure, ApplicationFailure, defaultPayloadConverter } from '@temporalio/common';
import { Lease } from '../../src/checkpoint/lease';
import { latestCompleteCheckpoint } from '../../src/checkpoint/store';
import { allowedRoots } from '../../src/allowed-paths';
import { planCurriculum } from '../../src/job';
import { logger } from '../../src/log';
import { launcherFor } from '../../src/train/launch';
import type { CheckpointSaved } from '../../src/train/shard-types';
import type { DevServer } from '../../src/temporal/devserver';
import { pauseSignal, progressQuery, resumeSignal, startJob } from '../../src/temporal/client';
import type { CurriculumResult, ShardSummary } from '../../src/shared/types';
import { StageSlurmFiles } from '../../src/train/launch/slurm-files';
import {
  CLI,
  client,
  eventTypeName,
  historyEvents,
  metricSteps,
  ROOT,
  server,
  spawnWorker,
  tmpDir,
  waitFor,
  type WorkerProc,
} from '../helpers';
import { type JobRecord, jobRecord, liveJobsNamed, type SlurmCluster, startSlurm } from '../slurm';

let slurm: SlurmCluster;
let srv: DevServer;
let worker: WorkerProc;
let c: Client;
const dir = tmpDir('slurm-jobs');
const runs = path.join(dir, 'runs');
const queue = 'slurm';
const t0 = Date.now();

/**
 * The workers' environment: the cluster's, and a Temporal setting (a gRPC header) that must not reach
 * the Slurm jobs. Job inputs reach the test's folder (--allow-path).
 */
const workerEnv = (): NodeJS.ProcessEnv => ({ ...slurm.env, TEMPORAL_GRPC_META_X_TTT_CANARY: 'canary' });
const allow = ['--allow-path', dir];

before(async () => {
  slurm = await startSlurm();
  srv = await server(path.join(dir, 'temporal.sqlite'));
  worker = spawnWorker(srv.address, queue, workerEnv(), allow);
  await worker.ready;
  c = await client(srv.address);
});

after(async () => {
  await c?.connection.close();
  await worker?.kill('SIGTERM');
  await srv?.stop();
  await slurm?.stop();
  process.stdout.write(`# slurm tests: ${((Date.now() - t0) / 1000).toFixed(1)} s in all\n`);
});

const onSlurm = {
  'job.dump_folder': runs,
  'training.global_batch_size': 1,
  'launcher.kind': 'slurm',
  'launcher.partition': 'debug',
  'launcher.poll_seconds': 0.5,
};

function input(jobName: string, set: Record<string, unknown>, until = '3s') {
  return { jobName, curriculum: 'configs/curriculum/tiny.toml', until, set: { ...onSlurm, ...set } };
}

const stageDir = (job: string, stage: string): string => path.join(runs, job, stage);
const files = (job: string, stage: string): StageSlurmFiles => new StageSlurmFiles(stageDir(job, stage));

/** The Slurm jobs submitted for a stage, oldest first, as scontrol reports them. */
function slurmJobs(job: string, stage: string): JobRecord[] {
  return files(job, stage).submitted().map(jobRecord);
}

/** Each job ended before the next one started (scontrol's times, to the second). */
function assertNoOverlap(jobs: JobRecord[]): void {
  for (let i = 1; i < jobs.length; i++) {
    const [a, b] = [jobs[i - 1]!, jobs[i]!];
    assert.ok(
      a.end > 0 && b.start >= a.end,
      `slurm jobs ${a.id} (${a.start}-${a.end}) and ${b.id} (${b.start}-) overlap`,
    );
  }
}

/** Results of the trainShard activities of a stage that completed (the shards the stage needed). */
async function shardsOf(job: string, stage: string): Promise<ShardSummary[]> {
  const events = await historyEvents(c, job);
  const types = new Map<string, string>();
  for (const e of events)
    if (eventTypeName(e) === 'EVENT_TYPE_ACTIVITY_TASK_SCHEDULED')
      types.set(String(e.eventId), e.activityTaskScheduledEventAttributes?.activityType?.name ?? '');
  return events.flatMap((e) => {
    const a = e.activityTaskCompletedEventAttributes;
    if (!a || types.get(String(a.scheduledEventId)) !== 'trainShard') return [];
    const r = defaultPayloadConverter.fromPayload<ShardSummary>(a.result!.payloads![0]! as never);
    return r.stage === stage ? [r] : [];
  });
}

function assertAllSteps(job: string, stage: string, steps: number): number[] {
  const trained = metricSteps(stageDir(job, stage));
  assert.deepEqual(
    [...new Set(trained)].sort((a, b) => a - b),
    Array.from({ length: steps }, (_, i) => i + 1),
    `${job} ${stage}: every step 1..${steps} trained`,
  );
  return trained;
}

async function trained(job: string, stage: string, n: number): Promise<void> {
  await waitFor(
    `${job} ${stage}: ${n} steps`,
    () => (metricSteps(stageDir(job, stage)).length >= n ? true : undefined),
    120_000,
    50,
  );
}

/** Median seconds per step of the 3s stage (batch 1) in the earlier tests' jobs on this machine; 0.5 if none ran. */
function stepSeconds3s(): number {
  const times = ['slurm-crash', 'slurm-scancel']
    .map((job) => path.join(stageDir(job, '3s'), 'metrics.jsonl'))
    .filter((f) => fs.existsSync(f))
    .flatMap((f) => fs.readFileSync(f, 'utf8').split('\n').filter(Boolean))
    .map((l) => (JSON.parse(l) as { step_time: number }).step_time)
    .sort((a, b) => a - b);
  return times.length > 0 ? times[Math.floor(times.length / 2)]! : 0.5;
}

function cli(args: string[]): string {
  return execFileSync(process.execPath, [CLI, ...args, '--address', srv.address], {
    cwd: ROOT,
    encoding: 'utf8',
    env: { ...process.env, TTT_LOG_LEVEL: 'warn' },
  });
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

async function trainShardAttempts(job: string): Promise<number[]> {
  return (await historyEvents(c, job))
    .filter((e) => eventTypeName(e) === 'EVENT_TYPE_ACTIVITY_TASK_STARTED')
    .map((e) => e.activityTaskStartedEventAttributes?.attempt ?? 0);
}

test('the tiny curriculum completes on Slurm, each stage final byte-identical to a local run', async (t) => {
  const set = { 'training.steps': 2, 'checkpoint.interval': 1 };
  const t1 = Date.now();
  const [onCluster, local] = (await Promise.all([
    startJob(c, input('tiny-slurm', set, '63s'), { taskQueue: queue }).then((h) => h.result()),
    startJob(c, input('tiny-local', { ...set, 'launcher.kind': 'local' }, '63s'), { taskQueue: queue }).then((h) =>
      h.result(),
    ),
  ])) as CurriculumResult[];
  assert.deepEqual(
    onCluster.stages.map((s) => s.stage),
    ['3s', '9s', '18s', '30s', '63s'],
  );
  for (const [i, s] of onCluster.stages.entries()) {
    assert.equal(s.modelSha256, local.stages[i]!.modelSha256, `${s.stage}: final model differs from the local run`);
    const jobs = slurmJobs('tiny-slurm', s.stage);
    assert.equal(jobs.length, (await shardsOf('tiny-slurm', s.stage)).length, `${s.stage}: one slurm job per shard`);
    assert.ok(jobs.every((j) => j.state === 'COMPLETED' && j.name === `tiny-slurm.${s.stage}`));
    assertAllSteps('tiny-slurm', s.stage, 2);
    assert.equal(fs.existsSync(path.join(runs, 'tiny-local', s.stage, 'slurm')), false, 'the local run used no slurm');
  }
  t.diagnostic(
    `5 stages x 2 steps, ${onCluster.stages.map((s) => slurmJobs('tiny-slurm', s.stage).length).join('+')} slurm jobs, ${((Date.now() - t1) / 1000).toFixed(1)} s; finals ${onCluster.stages.map((s) => `${s.stage} ${s.modelSha256.slice(0, 12)}`).join(', ')}`,
  );
});

test('the worker SIGKILLed while its Slurm job trains: the next worker re-attaches; one job per shard, none overlapping, no step missing', async (t) => {
  const job = 'slurm-crash';
  const q = 'slurm-crash';
  const steps = 40;
  const a = spawnWorker(srv.address, q, workerEnv(), allow);
  let b: WorkerProc | undefined;
  try {
    await a.ready;
    const h = await startJob(
      c,
      input(job, {
        'training.steps': steps,
        'checkpoint.interval': 5,
        'shard.max_steps': 20,
        'shard.heartbeat_timeout_seconds': 4,
      }),
      { taskQueue: q },
    );
    await trained(job, '3s', 3);
    const [running] = liveJobsNamed(`${job}.3s`);
    assert.match(running ?? '', /^\d+ RUNNING$/, 'the first shard runs as a slurm job');
    const jobId = running!.split(' ')[0]!;
    await a.kill('SIGKILL');
    assert.deepEqual(
      liveJobsNamed(`${job}.3s`).map((l) => l.split(' ')[0]),
      [jobId],
      'the slurm job outlives the worker',
    );
    b = spawnWorker(srv.address, q, workerEnv(), allow);
    await b.ready;
    const result = (await h.result()) as CurriculumResult;
    assert.equal(result.stages[0]!.steps, steps);
    const jobs = slurmJobs(job, '3s');
    const shards = await shardsOf(job, '3s');
    assert.equal(
      jobs.length,
      shards.length,
      `slurm jobs ${jobs.map((j) => j.id).join(', ')} vs ${shards.length} shards`,
    );
    assert.equal(jobs.length, 2, '40 steps in shards of 20');
    assert.equal(jobs[0]!.id, jobId, 'the job running at the kill was not submitted again');
    assertNoOverlap(jobs);
    const log = b.stderr();
    const reattached = new RegExp(`"slurmJob":"${jobId}"[^\\n]*re-attaching`).test(log);
    const lateResult = new RegExp(`"slurmJob":"${jobId}"[^\\n]*ended while no worker watched it`).test(log);
    assert.ok(reattached || lateResult, 'the new worker took over the running job');
    const s3 = assertAllSteps(job, '3s', steps);
    t.diagnostic(
      `killed the worker at slurm job ${jobId}; the new worker ${reattached ? 're-attached to it' : 'collected its result'}; ${jobs.length} jobs (${jobs.map((j) => `${j.id} ${j.start}-${j.end}`).join(', ')}) for ${shards.length} shards; ${s3.length} metric lines for ${steps} steps`,
    );
  } finally {
    await a.kill();
    await b?.kill('SIGTERM');
  }
});

test('a Slurm job scancelled from outside: the stage is resubmitted, resumes from its checkpoint and completes', async (t) => {
  const job = 'slurm-scancel';
  const steps = 20;
  const h = await startJob(c, input(job, { 'training.steps': steps, 'checkpoint.interval': 5 }), { taskQueue: queue });
  await trained(job, '3s', 7);
  const [first] = liveJobsNamed(`${job}.3s`);
  const id = first!.split(' ')[0]!;
  execFileSync('scancel', [id]);
  const result = (await h.result()) as CurriculumResult;
  assert.equal(result.stages[0]!.steps, steps);
  const jobs = slurmJobs(job, '3s');
  assert.ok(jobs.length >= 2, `resubmitted: ${jobs.map((j) => j.id).join(', ')}`);
  assert.equal(jobs[0]!.id, id);
  assert.equal(jobs[0]!.state, 'CANCELLED');
  assert.equal(files(job, '3s').ended(id)?.outcome, 'none', 'the cancelled job reported nothing');
  assert.equal(jobs.at(-1)!.state, 'COMPLETED');
  assertNoOverlap(jobs);
  const s3 = assertAllSteps(job, '3s', steps);
  assert.ok(s3.length - steps <= 5, `${s3.length - steps} steps redone; at most checkpoint.interval`);
  t.diagnostic(
    `scancelled job ${id}; jobs ${jobs.map((j) => `${j.id} ${j.state}`).join(', ')}; ${s3.length - steps} steps redone`,
  );
});

test('a time_limit shorter than the stage: Slurm warns with USR1, the job saves and ends, the stage comes back in a new job and completes', async (t) => {
  const job = 'slurm-timelimit';
  // One minute per job, the warning 45 s before its end. Slurm checks time limits every 30 s or so, so the
  // warning comes 10 to 45 s into a job: the stage is sized to train for about 50 s on this machine.
  const steps = Math.max(60, Math.ceil(50 / stepSeconds3s()));
  const h = await startJob(
    c,
    input(job, {
      'training.steps': steps,
      'checkpoint.interval': 1000,
      'shard.max_seconds': 600,
      'launcher.time_limit': '1',
      'launcher.signal_seconds': 45,
    }),
    { taskQueue: queue },
  );
  const result = (await h.result()) as CurriculumResult;
  assert.equal(result.stages[0]!.steps, steps);
  const jobs = slurmJobs(job, '3s');
  assert.ok(jobs.length >= 2, `the stage needed more than one job: ${jobs.map((j) => j.id).join(', ')}`);
  const f = files(job, '3s');
  for (const j of jobs.slice(0, -1)) {
    const out = f.outcome(j.id);
    assert.equal(out?.ttt, 'result', `job ${j.id} reported a result`);
    assert.equal(out?.ttt === 'result' && out.result.reason, 'stop', `job ${j.id} ended on the warning signal`);
    assert.equal(j.state, 'COMPLETED', `job ${j.id} saved and ended before the time limit killed it`);
  }
  assert.deepEqual(
    jobs.map((j) => j.id),
    (await shardsOf(job, '3s')).map((_, i) => jobs[i]!.id),
    'one shard per job',
  );
  assertNoOverlap(jobs);
  const s3 = assertAllSteps(job, '3s', steps);
  assert.equal(s3.length, steps, 'no step redone: each job saved its last step');
  t.diagnostic(
    `${steps} steps, ${jobs.length} jobs: ${jobs
      .map(
        (j) =>
          `${j.id} ran ${j.end - j.start} s, to step ${(() => {
            const o = f.outcome(j.id);
            return o?.ttt === 'result' ? o.result.step : '?';
          })()}`,
      )
      .join('; ')}`,
  );
});

test('pause, resume and cancel through Slurm: each saves a checkpoint and ends the job; status shows the job', async (t) => {
  const job = 'slurm-controls';
  const h = await startJob(
    c,
    input(job, { 'training.steps': 400, 'checkpoint.interval': 100, 'shard.max_seconds': 600 }),
    { taskQueue: queue },
  );
  const sDir = stageDir(job, '3s');
  await trained(job, '3s', 3);
  const [running] = liveJobsNamed(`${job}.3s`);
  const first = running!.split(' ')[0]!;
  const status = await waitFor('status with the slurm job and its backend', () => {
    const s = JSON.parse(cli(['status', job, '--json'])) as {
      launcher: { kind: string; jobId: string; state: string };
      backend: string | null;
      device: string | null;
    };
    return s.launcher?.jobId && s.backend ? s : undefined;
  });
  assert.deepEqual(status.launcher, { kind: 'slurm', jobId: first, state: 'RUNNING' });
  // What the trainer in the Slurm job runs on, from its metrics.jsonl lines.
  assert.ok(['tensorflow', 'wasm', 'cpu'].includes(status.backend!), `backend ${status.backend}`);
  assert.match(status.device ?? '', /^(cpu|gpu): /);
  assert.match(cli(['status', job]), new RegExp(`stage 3s, step \\d+/400, loss .* \\(slurm job ${first} RUNNING\\)`));

  await h.signal(pauseSignal);
  await waitFor('paused', async () => ((await h.query(progressQuery)).state === 'paused' ? true : undefined), 60_000);
  assert.deepEqual(liveJobsNamed(`${job}.3s`), [], 'no slurm job while paused');
  const paused = metricSteps(sDir);
  const ck = latestCompleteCheckpoint(path.join(sDir, 'checkpoints'));
  assert.equal(ck?.state.step, paused.at(-1), 'the pause saved the last trained step');
  assert.equal(jobRecord(first).state, 'COMPLETED', 'the job ended on SIGUSR1, not killed');

  await h.signal(resumeSignal);
  await trained(job, '3s', paused.length + 2);
  const jobs = slurmJobs(job, '3s');
  assert.equal(jobs.length, 2, 'resume submitted a new job');
  await h.cancel();
  await assert.rejects(h.result(), (e: unknown) => e instanceof WorkflowFailedError);
  assert.equal((await h.describe()).status.name, 'CANCELLED');
  assert.deepEqual(liveJobsNamed(`${job}.3s`), [], 'no slurm job after cancel');
  const done = metricSteps(sDir);
  const ck2 = latestCompleteCheckpoint(path.join(sDir, 'checkpoints'));
  assert.equal(ck2?.state.step, done.at(-1), 'the cancel saved the last trained step');
  const second = jobRecord(jobs[1]!.id);
  assert.equal(second.state, 'COMPLETED');
  assert.equal(files(job, '3s').ended(second.id)?.stopped, true);
  assertNoOverlap(slurmJobs(job, '3s'));
  t.diagnostic(`paused at step ${paused.at(-1)} (job ${first}), cancelled at step ${done.at(-1)} (job ${second.id})`);
});

test('fencing reaches a Slurm job: once a newer writer takes the stage, the job stops before its next write; its checkpoint saves reach the worker', async () => {
  const jobDir = path.join(runs, 'slurm-fenced');
  const stage = path.join(jobDir, '3s');
  const plan = planCurriculum(input('slurm-fenced', {}), allowedRoots({ allowPaths: [dir] }));
  const launcher = launcherFor(plan.stages[0]!.launcher);
  const saves: CheckpointSaved[] = [];
  const run = launcher.run(
    {
      jobName: 'slurm-fenced',
      stage: '3s',
      totalSteps: 400,
      request: {
        configFile: path.join(ROOT, 'configs', 'train', 'tiny', '3s.toml'),
        overrides: { ...onSlurm, 'training.steps': 400, 'checkpoint.interval': 100, 'shard.max_seconds': 600 },
        jobDir,
        initFrom: null,
        who: 'the fencing test',
      },
    },
    { log: logger, onCheckpoint: (c) => saves.push(c) },
  );
  const failed = run.then(
    () => assert.fail('the fenced job should fail'),
    (e: unknown) => e as Error,
  );
  await trained('slurm-fenced', '3s', 2);
  const newer = Lease.acquire(stage, 'a newer writer (the test)');
  const atLease = metricSteps(stage).length;
  const e = await failed;
  assert.match(
    e.message,
    /slurm job \d+ failed: fenced: lease \d+ .* was superseded by lease \d+ \(a newer writer \(the test\)/,
  );
  const [id] = files('slurm-fenced', '3s').submitted();
  assert.equal(jobRecord(id!).state, 'FAILED');
  assert.ok(
    metricSteps(stage).length <= atLease + 1,
    'at most the step in flight when the lease was taken was written',
  );
  assert.ok(newer.epoch > 1);
  assert.equal(saves[0]?.step, 0, 'the checkpoint saves of the Slurm trainer reach the worker (for Prometheus)');
  assert.ok(saves[0]!.bytes > 0 && saves[0]!.dir.endsWith('step-00000000'));
});

test("an unknown partition fails at once, non-retryably, with Slurm's message and the fix", async () => {
  const job = 'slurm-nopartition';
  const h = await startJob(c, input(job, { 'launcher.partition': 'nope' }), { taskQueue: queue });
  const app = await failure(h);
  assert.equal(app.type, 'SlurmError');
  assert.equal(app.nonRetryable, true);
  assert.match(
    app.message,
    /sbatch refused the batch job of stage 3s: sbatch: error: invalid partition specified: nope/,
  );
  assert.match(app.message, /Batch job submission failed: Invalid partition name specified/);
  assert.match(app.message, /Fix: set launcher\.partition to a partition that `sinfo --summarize` lists/);
  assert.deepEqual((await trainShardAttempts(job)).slice(-1), [1], 'never retried');
  assert.deepEqual(files(job, '3s').submitted(), [], 'nothing was submitted');
});

test('a broken setup line (worker-side config): the stage fails after max_failed_starts jobs, showing their output; the jobs get no TEMPORAL_* variable', async (t) => {
  const job = 'slurm-badsetup';
  const cfg = path.join(dir, 'setup-config');
  fs.mkdirSync(cfg, { recursive: true });
  const stage = fs.readFileSync(path.join(ROOT, 'configs', 'train', 'tiny', '3s.toml'), 'utf8');
  fs.writeFileSync(
    path.join(cfg, '3s.toml'),
    `${stage}\n[launcher]\nsetup = ['echo "TEMPORAL_ variables: $(env | grep -c ^TEMPORAL_)"', "echo preparing", "no-such-module-command load cuda"]\n`,
  );
  fs.writeFileSync(path.join(cfg, 'curriculum.toml'), 'name = "bad setup"\nstages = ["3s.toml"]\n');
  const h = await startJob(
    c,
    { jobName: job, curriculum: path.join(cfg, 'curriculum.toml'), set: onSlurm },
    { taskQueue: queue },
  );
  const app = await failure(h);
  assert.equal(app.type, 'SlurmError');
  assert.equal(app.nonRetryable, true);
  const ids = files(job, '3s').submitted();
  assert.equal(ids.length, 3, 'launcher.max_failed_starts = 3 jobs');
  assert.match(
    app.message,
    new RegExp(`the last 3 Slurm jobs of ${job}\\.3s \\(${ids.join(', ')}\\) ended without training a step`),
  );
  assert.match(app.message, /preparing\n.*no-such-module-command: command not found/);
  // The worker has a TEMPORAL_* setting; sbatch exported its environment without it.
  assert.match(app.message, /TEMPORAL_ variables: 0\n/);
  assert.match(app.message, /Fix: fix what the output shows/);
  t.diagnostic(`${ids.length} jobs, ${(await trainShardAttempts(job)).length} activity attempts`);
});
