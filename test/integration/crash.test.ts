/**
 * Crash safety on a real dev server: a worker SIGKILLed in the middle of a shard (its training
 * child dies with it) and a Temporal server restarted mid-run on the same SQLite file.
 */
import assert from 'node:assert/strict';
import * as path from 'node:path';
import { test } from 'node:test';
import { startJob } from '../../src/temporal/client';
import { latestCompleteCheckpoint, verifyCheckpoint } from '../../src/checkpoint/store';
import { startDevServer } from '../../src/temporal/devserver';
import type { CurriculumResult } from '../../src/shared/types';
import {
  client,
  freezeTrainingWhen,
  metricSteps,
  server,
  spawnWorker,
  tmpDir,
  trainingChildren,
  waitFor,
} from '../helpers';

const STEPS = 24;
const INTERVAL = 5;

function input(job: string, runs: string) {
  return {
    jobName: job,
    curriculum: 'configs/curriculum/tiny.toml',
    until: '9s',
    set: {
      'job.dump_folder': runs,
      'training.steps': STEPS,
      'checkpoint.interval': INTERVAL,
      'training.global_batch_size': 1,
    },
  };
}

function assertExact(result: CurriculumResult, runs: string, job: string): void {
  assert.deepEqual(
    result.stages.map((s) => s.stage),
    ['3s', '9s'],
  );
  for (const s of result.stages) {
    assert.equal(s.steps, STEPS);
    const v = verifyCheckpoint(s.finalCheckpoint);
    assert.ok(v.ok && v.state.step === STEPS);
    const steps = metricSteps(path.join(runs, job, s.stage));
    assert.deepEqual(
      [...new Set(steps)].sort((a, b) => a - b),
      Array.from({ length: STEPS }, (_, i) => i + 1),
      `${s.stage}: every step 1..${STEPS} trained`,
    );
  }
}

test('a worker killed with SIGKILL mid-shard: a new worker finishes, redoing exactly the steps since the last checkpoint', async () => {
  const dir = tmpDir('crash');
  const runs = path.join(dir, 'runs');
  const srv = await server(path.join(dir, 'temporal.sqlite'));
  const queue = 'crash';
  const job = 'crash-job';
  const a = spawnWorker(srv.address, queue, {}, ['--allow-path', dir]);
  let b: ReturnType<typeof spawnWorker> | undefined;
  try {
    await a.ready;
    const c = await client(srv.address);
    const handle = await startJob(c, input(job, runs), { taskQueue: queue });
    // Kill between two checkpoints, triggered by the metrics line itself: the training child is
    // frozen (SIGSTOP) at a line past step 6 that is not a checkpoint step, so what it has written
    // when the worker dies is known exactly, whatever the machine's speed.
    const stage3 = path.join(runs, job, '3s');
    const frozen = await freezeTrainingWhen(stage3, runs, (last) => last >= 7 && last % INTERVAL !== 0);
    assert.deepEqual(trainingChildren(runs), [frozen.pid], 'one training child is running');
    await a.kill('SIGKILL');
    // Let the orphan run on: it must notice its parent is gone and exit without writing.
    process.kill(frozen.pid, 'SIGCONT');
    await waitFor(
      'the orphaned training child to exit',
      () => (trainingChildren(runs).length === 0 ? true : undefined),
      60_000,
    );
    const linesAtKill = metricSteps(stage3);
    assert.equal(linesAtKill.at(-1), frozen.last, 'the orphan wrote no step after its parent died');
    const resumeFrom = latestCompleteCheckpoint(path.join(stage3, 'checkpoints'))!.state.step;
    assert.equal(resumeFrom, frozen.last - (frozen.last % INTERVAL), 'the last complete checkpoint at the kill');
    b = spawnWorker(srv.address, queue, {}, ['--allow-path', dir]);
    await b.ready;
    const result = (await handle.result()) as CurriculumResult;
    assertExact(result, runs, job);
    // Observed from the metrics lines: after the kill, training restarted at the checkpoint, so
    // exactly the steps after it that had been trained appear twice.
    const s3 = metricSteps(stage3);
    assert.deepEqual(s3.slice(0, linesAtKill.length), linesAtKill, 'the lines before the kill are untouched');
    const redone = s3.slice(linesAtKill.length).filter((st) => st <= frozen.last);
    assert.deepEqual(
      redone,
      Array.from({ length: frozen.last - resumeFrom }, (_, i) => resumeFrom + 1 + i),
      `after a kill at step ${frozen.last}, steps ${resumeFrom + 1}..${frozen.last} were trained again`,
    );
    assert.ok(redone.length >= 1 && redone.length < INTERVAL);
    await c.connection.close();
  } finally {
    await a.kill();
    await b?.kill('SIGTERM');
    await srv.stop();
  }
});

test('the Temporal server restarted mid-run on the same SQLite file: the job completes', async () => {
  const dir = tmpDir('restart');
  const runs = path.join(dir, 'runs');
  const db = path.join(dir, 'temporal.sqlite');
  let srv = await server(db);
  const port = srv.port;
  const queue = 'restart';
  const job = 'restart-job';
  const w = spawnWorker(srv.address, queue, {}, ['--allow-path', dir]);
  try {
    await w.ready;
    const c1 = await client(srv.address);
    await startJob(c1, input(job, runs), { taskQueue: queue });
    await waitFor(
      '3s step 3',
      () => (metricSteps(path.join(runs, job, '3s')).length >= 3 ? true : undefined),
      120_000,
      50,
    );
    await c1.connection.close();
    await srv.stop();
    await new Promise((r) => setTimeout(r, 1000));
    srv = await startDevServer({ dbFile: db, headless: true, port });
    const c2 = await client(srv.address);
    const result = (await c2.workflow.getHandle(job).result()) as CurriculumResult;
    assertExact(result, runs, job);
    await c2.connection.close();
  } finally {
    await w.kill('SIGTERM');
    await srv.stop();
  }
});
