/**
 * The command engine under the Slurm launcher, on a real one-node Slurm cluster (test/slurm.ts)
 * with a real dev server and worker: each shard is a batch job whose program is the engine runner
 * (src/engine/child.ts --detached), which runs this project's own trainer as an external one
 * (`engine.preset = "ours"`).
 *
 *   - the tiny curriculum, finals byte-identical to the built-in engine run locally;
 *   - pause and cancel: scancel --signal=USR1 reaches the runner, which has the trainer save and end.
 */
import assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { after, before, test } from 'node:test';
import { type Client, WorkflowFailedError } from '@temporalio/client';
import { latestCompleteCheckpoint } from '../../src/checkpoint/store';
import { pauseSignal, progressQuery, resumeSignal, startJob } from '../../src/temporal/client';
import type { DevServer } from '../../src/temporal/devserver';
import type { CurriculumResult } from '../../src/shared/types';
import { StageSlurmFiles } from '../../src/train/launch/slurm-files';
import { client, metricSteps, server, spawnWorker, tmpDir, waitFor, type WorkerProc } from '../helpers';
import { jobRecord, liveJobsNamed, type SlurmCluster, startSlurm } from '../slurm';

let slurm: SlurmCluster;
let srv: DevServer;
let worker: WorkerProc;
let c: Client;
const dir = tmpDir('engine-slurm');
const runs = path.join(dir, 'runs');
const queue = 'engine-slurm';
const t0 = Date.now();

before(async () => {
  slurm = await startSlurm();
  srv = await server(path.join(dir, 'temporal.sqlite'));
  worker = spawnWorker(srv.address, queue, slurm.env, ['--allow-path', dir]);
  await worker.ready;
  c = await client(srv.address);
});

after(async () => {
  await c?.connection.close();
  await worker?.kill('SIGTERM');
  await srv?.stop();
  await slurm?.stop();
  process.stdout.write(`# engine slurm tests: ${((Date.now() - t0) / 1000).toFixed(1)} s in all\n`);
});

const onSlurm = {
  'launcher.kind': 'slurm',
  'launcher.partition': 'debug',
  'launcher.poll_seconds': 0.5,
  'engine.preset': 'ours',
};

function input(jobName: string, set: Record<string, unknown>, until = '3s') {
  return {
    jobName,
    curriculum: 'configs/curriculum/tiny.toml',
    until,
    set: { 'job.dump_folder': runs, 'training.global_batch_size': 1, ...set },
  };
}

const stageDir = (job: string, stage: string): string => path.join(runs, job, stage);
const files = (job: string, stage: string): StageSlurmFiles => new StageSlurmFiles(stageDir(job, stage));

async function trained(job: string, stage: string, n: number): Promise<void> {
  await waitFor(
    `${job} ${stage}: ${n} steps`,
    () => (metricSteps(stageDir(job, stage)).length >= n ? true : undefined),
    300_000,
    50,
  );
}

test('the tiny curriculum with ttt-curriculum train as an external engine on Slurm: every final byte-identical to the built-in engine run locally', async (t) => {
  const set = { 'training.steps': 2, 'checkpoint.interval': 1 };
  const t1 = Date.now();
  const [onCluster, local] = (await Promise.all([
    startJob(c, input('engine-slurm', { ...set, ...onSlurm }, '63s'), { taskQueue: queue }).then((h) => h.result()),
    startJob(c, input('builtin-local', set, '63s'), { taskQueue: queue }).then((h) => h.result()),
  ])) as CurriculumResult[];
  assert.deepEqual(
    onCluster.stages.map((s) => s.stage),
    ['3s', '9s', '18s', '30s', '63s'],
  );
  for (const [i, s] of onCluster.stages.entries()) {
    assert.equal(
      s.modelSha256,
      local.stages[i]!.modelSha256,
      `${s.stage}: the final differs from the built-in engine's`,
    );
    const f = files('engine-slurm', s.stage);
    const jobs = f.submitted().map(jobRecord);
    assert.ok(jobs.length >= 1 && jobs.every((j) => j.state === 'COMPLETED'), `${s.stage}: ${JSON.stringify(jobs)}`);
    assert.match(
      fs.readFileSync(f.script(), 'utf8'),
      /engine\/child\.js' --detached /,
      'the batch job runs the engine runner',
    );
    const out = f.outcome(jobs.at(-1)!.id);
    assert.equal(
      out?.ttt === 'result' && out.result.backend,
      'ours',
      'the runner wrote the result from the checkpoints',
    );
    assert.match(
      fs.readFileSync(f.output(jobs.at(-1)!.id), 'utf8'),
      / train .*config\.ours\.toml --job\.exp_name=engine-slurm/,
    );
  }
  t.diagnostic(
    `5 stages x 2 steps on Slurm in ${((Date.now() - t1) / 1000).toFixed(1)} s; finals ${onCluster.stages.map((s) => `${s.stage} ${s.modelSha256.slice(0, 12)}`).join(', ')}`,
  );
});

test('pause, resume and cancel through Slurm: the runner turns SIGUSR1 into the trainer saving its last step and ending', async (t) => {
  const job = 'engine-slurm-controls';
  const h = await startJob(
    c,
    input(job, { ...onSlurm, 'training.steps': 400, 'checkpoint.interval': 100, 'shard.max_seconds': 600 }),
    { taskQueue: queue },
  );
  const sDir = stageDir(job, '3s');
  await trained(job, '3s', 3);
  const [running] = liveJobsNamed(`${job}.3s`);
  const first = running!.split(' ')[0]!;
  await h.signal(pauseSignal);
  await waitFor('paused', async () => ((await h.query(progressQuery)).state === 'paused' ? true : undefined), 120_000);
  assert.deepEqual(liveJobsNamed(`${job}.3s`), [], 'no slurm job while paused');
  const paused = metricSteps(sDir);
  const ck = latestCompleteCheckpoint(path.join(sDir, 'checkpoints'));
  assert.equal(ck?.state.step, paused.at(-1), 'the pause saved the last trained step');
  assert.equal(jobRecord(first).state, 'COMPLETED', 'the job ended after the save, not killed');
  const outcome = files(job, '3s').outcome(first);
  assert.equal(outcome?.ttt === 'result' && outcome.result.reason, 'stop');
  await h.signal(resumeSignal);
  await trained(job, '3s', paused.length + 2);
  await h.cancel();
  await assert.rejects(h.result(), (e: unknown) => e instanceof WorkflowFailedError);
  assert.deepEqual(liveJobsNamed(`${job}.3s`), [], 'no slurm job after cancel');
  const done = metricSteps(sDir);
  const ck2 = latestCompleteCheckpoint(path.join(sDir, 'checkpoints'));
  assert.equal(ck2?.state.step, done.at(-1), 'the cancel saved the last trained step');
  t.diagnostic(`paused at step ${paused.at(-1)} (job ${first}), cancelled at step ${done.at(-1)}`);
});
