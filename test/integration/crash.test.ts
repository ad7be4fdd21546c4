/**
 * Crash safety on a real dev server: a worker SIGKILLed in the middle of a shard (its training
 * child dies with it) and a Temporal server restarted mid-run on the same SQLite file.
 */
import assert from 'node:assert/strict';
import * as path from 'node:path';
import { test } from 'node:test';
import { startJob } from '../../src/temporal/client';
import { verifyCheckpoint } from '../../src/checkpoint/store';
import { startDevServer } from '../../src/temporal/devserver';
import type { CurriculumResult } from '../../src/shared/types';
import { client, metricSteps, server, spawnWorker, tmpDir, trainingChildren, waitFor } from '../helpers';

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

test('a worker killed with SIGKILL mid-shard: a new worker finishes, at most checkpoint.interval steps redone', async () => {
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
    // Kill between two checkpoints: 3s has trained past step 6 (checkpoints at 5, 10, ...).
    const killedAt = await waitFor(
      '3s step 7',
      () => {
        const s = metricSteps(path.join(runs, job, '3s'));
        const last = s[s.length - 1] ?? 0;
        return last >= 7 && last % INTERVAL !== 0 ? last : undefined;
      },
      120_000,
      20,
    );
    const children = trainingChildren(runs);
    assert.equal(children.length, 1, 'one training child is running');
    await a.kill('SIGKILL');
    await waitFor(
      'the orphaned training child to exit',
      () => (trainingChildren(runs).length === 0 ? true : undefined),
      15_000,
    );
    b = spawnWorker(srv.address, queue, {}, ['--allow-path', dir]);
    await b.ready;
    const result = (await handle.result()) as CurriculumResult;
    assertExact(result, runs, job);
    const s3 = metricSteps(path.join(runs, job, '3s'));
    const redone = s3.length - STEPS;
    assert.ok(
      redone >= 1 && redone <= INTERVAL,
      `redone ${redone} steps after a kill at step ${killedAt}; at most ${INTERVAL}`,
    );
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
