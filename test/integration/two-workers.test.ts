/**
 * Two workers in two processes on one task queue, sharing the job's checkpoint folder. The
 * worker that runs the training shard (the parent of the training child) is SIGKILLed; the
 * other one picks the shard up after the heartbeat timeout, resumes from the shared
 * checkpoints and finishes the job with no step lost.
 */
import assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { test } from 'node:test';
import { verifyCheckpoint } from '../../src/checkpoint/store';
import { startJob } from '../../src/temporal/client';
import type { CurriculumResult } from '../../src/shared/types';
import { client, metricSteps, server, spawnWorker, tmpDir, trainingChildren, waitFor } from '../helpers';

const STEPS = 12;
const INTERVAL = 4;

function parentPid(pid: number): number | undefined {
  try {
    const stat = fs.readFileSync(`/proc/${pid}/stat`, 'utf8');
    return Number(stat.slice(stat.lastIndexOf(')') + 2).split(' ')[1]);
  } catch {
    return undefined;
  }
}

test('two workers share the checkpoint folder: the one running the shard is SIGKILLed, the other finishes the job', async () => {
  const dir = tmpDir('two-workers');
  const runs = path.join(dir, 'runs');
  const srv = await server(path.join(dir, 'temporal.sqlite'));
  const queue = 'two-workers';
  const job = 'two-workers-job';
  const workers = [
    spawnWorker(srv.address, queue, {}, ['--allow-path', dir]),
    spawnWorker(srv.address, queue, {}, ['--allow-path', dir]),
  ];
  try {
    await Promise.all(workers.map((w) => w.ready));
    const c = await client(srv.address);
    const handle = await startJob(
      c,
      {
        jobName: job,
        curriculum: 'configs/curriculum/tiny.toml',
        until: '9s',
        set: {
          'job.dump_folder': runs,
          'training.steps': STEPS,
          'checkpoint.interval': INTERVAL,
          'training.global_batch_size': 1,
          'shard.heartbeat_timeout_seconds': 4,
        },
      },
      { taskQueue: queue },
    );
    // Between two checkpoints of 3s: past step 5, not on a checkpoint step.
    const killedAt = await waitFor(
      '3s step 5',
      () => {
        const s = metricSteps(path.join(runs, job, '3s'));
        const last = s[s.length - 1] ?? 0;
        return last >= 5 && last % INTERVAL !== 0 ? last : undefined;
      },
      120_000,
      20,
    );
    const [child] = trainingChildren(runs);
    assert.ok(child, 'a training child is running');
    const owner = workers.findIndex((w) => w.proc.pid === parentPid(child));
    assert.ok(owner >= 0, `the training child ${child} belongs to one of the two workers`);
    const survivor = workers[1 - owner]!;
    await workers[owner]!.kill('SIGKILL');
    await waitFor(
      'the orphaned training child to exit',
      () => (trainingChildren(runs).length === 0 ? true : undefined),
      15_000,
    );
    // The survivor takes the shard over: its own training child appears.
    const taken = await waitFor(
      'the other worker to start a training child',
      () => trainingChildren(runs).find((p) => parentPid(p) === survivor.proc.pid),
      120_000,
      100,
    );
    assert.ok(taken > 0);
    const result = (await handle.result()) as CurriculumResult;
    assert.deepEqual(
      result.stages.map((s) => s.stage),
      ['3s', '9s'],
    );
    for (const s of result.stages) {
      const v = verifyCheckpoint(s.finalCheckpoint);
      assert.ok(v.ok, `${s.stage}: final checkpoint verifies`);
      assert.equal(v.state.step, STEPS, `${s.stage}: final at the last step`);
      assert.equal(s.steps, STEPS);
      const steps = metricSteps(path.join(runs, job, s.stage));
      assert.deepEqual(
        [...new Set(steps)].sort((a, b) => a - b),
        Array.from({ length: STEPS }, (_, i) => i + 1),
        `${s.stage}: every step 1..${STEPS} trained`,
      );
    }
    const s3 = metricSteps(path.join(runs, job, '3s'));
    const redone = s3.length - STEPS;
    assert.ok(
      redone >= 1 && redone <= INTERVAL,
      `3s: ${redone} steps redone after the kill at step ${killedAt}; at most ${INTERVAL}`,
    );
    assert.equal(survivor.proc.exitCode, null, 'the surviving worker is still running');
    await c.connection.close();
  } finally {
    for (const w of workers) await w.kill('SIGTERM');
    await srv.stop();
  }
});
