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
import { latestCompleteCheckpoint, verifyCheckpoint } from '../../src/checkpoint/store';
import { startJob } from '../../src/temporal/client';
import type { CurriculumResult } from '../../src/shared/types';
import {
  client,
  eventMs,
  eventTypeName,
  freezeTrainingWhen,
  historyEvents,
  metricSteps,
  server,
  spawnWorker,
  tmpDir,
  trainingChildren,
  waitFor,
} from '../helpers';

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
    // Between two checkpoints of 3s: the training child is frozen (SIGSTOP) at a metrics line past
    // step 4 that is not a checkpoint step, triggered by the line itself, so what it has written
    // when its worker dies is known exactly, whatever the machine's speed.
    const stage3 = path.join(runs, job, '3s');
    const frozen = await freezeTrainingWhen(stage3, runs, (last) => last >= 5 && last % INTERVAL !== 0);
    const child = frozen.pid;
    const owner = workers.findIndex((w) => w.proc.pid === parentPid(child));
    assert.ok(owner >= 0, `the training child ${child} belongs to one of the two workers`);
    const survivor = workers[1 - owner]!;
    await workers[owner]!.kill('SIGKILL');
    const killedAtMs = Date.now();
    process.kill(child, 'SIGCONT');
    await waitFor(
      'the orphaned training child to exit',
      () => (trainingChildren(runs).every((p) => p !== child) ? true : undefined),
      60_000,
    );
    const linesAtKill = metricSteps(stage3);
    assert.equal(linesAtKill.at(-1), frozen.last, 'the orphan wrote no step after its parent died');
    const resumeFrom = latestCompleteCheckpoint(path.join(stage3, 'checkpoints'))!.state.step;
    assert.equal(resumeFrom, frozen.last - (frozen.last % INTERVAL), 'the last complete checkpoint at the kill');
    const result = (await handle.result()) as CurriculumResult;
    // The survivor took the shard over: every trainShard completion recorded in the history after
    // the kill (same machine, same clock) names the survivor's worker identity (the SDK's default, pid@host).
    const events = await historyEvents(c, job);
    const completions = events
      .filter((e) => eventTypeName(e) === 'EVENT_TYPE_ACTIVITY_TASK_COMPLETED')
      .map((e) => {
        const scheduled = events.find(
          (x) => Number(x.eventId) === Number(e.activityTaskCompletedEventAttributes?.scheduledEventId),
        );
        return {
          at: eventMs(e),
          type: scheduled?.activityTaskScheduledEventAttributes?.activityType?.name,
          identity: e.activityTaskCompletedEventAttributes?.identity ?? '',
        };
      })
      .filter((x) => x.type === 'trainShard' && x.at > killedAtMs);
    assert.ok(completions.length >= 1, 'trainShard completions after the kill');
    assert.ok(
      completions.every((x) => x.identity.startsWith(`${survivor.proc.pid}@`)),
      `every trainShard was completed by the survivor (pid ${survivor.proc.pid}): ${completions.map((x) => x.identity).join(', ')}`,
    );
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
    // Observed from the metrics lines: the survivor restarted at the checkpoint, so exactly the
    // steps after it that had been trained appear twice.
    const s3 = metricSteps(stage3);
    assert.deepEqual(s3.slice(0, linesAtKill.length), linesAtKill, 'the lines before the kill are untouched');
    const redone = s3.slice(linesAtKill.length).filter((st) => st <= frozen.last);
    assert.deepEqual(
      redone,
      Array.from({ length: frozen.last - resumeFrom }, (_, i) => resumeFrom + 1 + i),
      `3s: after the kill at step ${frozen.last}, steps ${resumeFrom + 1}..${frozen.last} were trained again`,
    );
    assert.ok(redone.length >= 1 && redone.length < INTERVAL);
    assert.equal(survivor.proc.exitCode, null, 'the surviving worker is still running');
    await c.connection.close();
  } finally {
    for (const w of workers) await w.kill('SIGTERM');
    await srv.stop();
  }
});
