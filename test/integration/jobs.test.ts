/**
 * Job identity and controls on a real dev server: one execution per job name, restart after
 * termination resumes, pause/resume, setUntil, cancel saves a checkpoint, and bad configs
 * fail fast and for good.
 */
import assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { test } from 'node:test';
import { WorkflowFailedError } from '@temporalio/client';
import { ActivityFailure, ApplicationFailure } from '@temporalio/common';
import { pauseSignal, progressQuery, resumeSignal, setUntilUpdate, startJob } from '../../src/temporal/client';
import { latestCompleteCheckpoint } from '../../src/checkpoint/store';
import type { CurriculumResult } from '../../src/shared/types';
import {
  eventMs,
  eventTypeName,
  freezeTrainingWhen,
  historyEvents,
  metricSteps,
  scheduledActivities,
  sha256File,
  sharedServer,
  waitFor,
  writesDuring,
} from '../helpers';

const env = sharedServer('jobs', 'jobs');
const { runs, queue } = env;

const base = { 'job.dump_folder': runs, 'training.global_batch_size': 1 };

/** Starts `job` on the tiny curriculum and waits until its 3s stage has trained 3 steps. */
async function startAndTrain3Steps(job: string, set: Record<string, unknown>) {
  const h = await startJob(
    env.c,
    { jobName: job, curriculum: 'configs/curriculum/tiny.toml', set: { ...base, ...set } },
    { taskQueue: queue },
  );
  const stageDir = path.join(runs, job, '3s');
  await waitFor('3s step 3', () => (metricSteps(stageDir).length >= 3 ? true : undefined), 120_000, 50);
  return { h, stageDir };
}

test('starting the same job name twice gives one execution; starting it after termination resumes', async () => {
  const job = 'names-job';
  const input = {
    jobName: job,
    curriculum: 'configs/curriculum/tiny.toml',
    until: '9s',
    set: { ...base, 'training.steps': 16, 'checkpoint.interval': 4 },
  };
  const h1 = await startJob(env.c, input, { taskQueue: queue });
  const h2 = await startJob(env.c, input, { taskQueue: queue });
  const r1 = (await h1.describe()).runId;
  assert.equal((await h2.describe()).runId, r1, 'the second start attached to the running execution');
  // Terminate once stage 1 is final and stage 2 has a checkpoint past step 0.
  await waitFor(
    '9s checkpoint at step >= 4',
    () => {
      const l = latestCompleteCheckpoint(path.join(runs, job, '9s', 'checkpoints'));
      return l && l.state.step >= 4 ? true : undefined;
    },
    120_000,
    50,
  );
  await h1.terminate('test: simulate an operator terminating the job');
  const finalDir3s = path.join(runs, job, '3s', 'final');
  const final3s = path.join(finalDir3s, 'model.safetensors');
  const before = { ino: fs.statSync(final3s).ino, sha: sha256File(final3s) };
  const before9s = metricSteps(path.join(runs, job, '9s')).length;
  // "Not rewritten" is observed: no write, create, rename or removal in the stage-1 final folder
  // (inotify) while the restarted job runs, and the same file (inode) with the same bytes after.
  const { result, writes } = await writesDuring(finalDir3s, async () => {
    const h3 = await startJob(env.c, input, { taskQueue: queue });
    const r3 = (await h3.describe()).runId;
    assert.notEqual(r3, r1, 'a new run after termination');
    return (await h3.result()) as CurriculumResult;
  });
  assert.deepEqual(
    result.stages.map((s) => [s.stage, s.steps]),
    [
      ['3s', 16],
      ['9s', 16],
    ],
  );
  assert.equal(metricSteps(path.join(runs, job, '3s')).length, 16, 'stage 1 was not trained again');
  assert.deepEqual(writes, [], 'nothing was written in the stage 1 final folder');
  assert.deepEqual(
    { ino: fs.statSync(final3s).ino, sha: sha256File(final3s) },
    before,
    'stage 1 final weights were not rewritten',
  );
  const s9 = metricSteps(path.join(runs, job, '9s'));
  assert.ok(
    s9.length - 16 <= 4,
    `9s resumed from its checkpoint: ${s9.length - before9s} steps after the restart, ${s9.length - 16} redone`,
  );
});

test('pause takes effect with a checkpoint, resume continues, setUntil validates and stops after the stage', async () => {
  const job = 'controls-job';
  const { h, stageDir } = await startAndTrain3Steps(job, { 'training.steps': 60, 'checkpoint.interval': 50 });
  await h.signal(pauseSignal);
  await waitFor('paused', async () => ((await h.query(progressQuery)).state === 'paused' ? true : undefined), 60_000);
  const trained = metricSteps(stageDir);
  const last = trained[trained.length - 1]!;
  const ck = latestCompleteCheckpoint(path.join(stageDir, 'checkpoints'));
  assert.equal(
    ck?.state.step,
    last,
    'pausing saved a checkpoint at the last trained step (not a multiple of the interval)',
  );
  await assert.rejects(h.executeUpdate(setUntilUpdate, { args: ['12s'] }), (e: unknown) =>
    /not a stage of this curriculum; use one of 3s, 9s, 18s, 30s, 63s/.test(
      String((e as Error).cause && ((e as Error).cause as Error).message),
    ),
  );
  assert.equal(await h.executeUpdate(setUntilUpdate, { args: ['3sec'] }), '3s');
  assert.deepEqual(metricSteps(stageDir), trained, 'no metrics line while paused');
  await h.signal(resumeSignal);
  const result = (await h.result()) as CurriculumResult;
  assert.deepEqual(
    result.stages.map((s) => [s.stage, s.steps]),
    [['3s', 60]],
  );
  // No training while paused, from the history: between the pause and resume signals the running
  // trainShard ended (cancelled with its checkpoint) and none was scheduled; the next one was
  // scheduled after resume. And no metrics line was written from that shard's end to the resume.
  const events = await historyEvents(env.c, job);
  const signalAt = (name: string): number =>
    events.findIndex(
      (e) =>
        eventTypeName(e) === 'EVENT_TYPE_WORKFLOW_EXECUTION_SIGNALED' &&
        e.workflowExecutionSignaledEventAttributes?.signalName === name,
    );
  const [p, r] = [signalAt('pause'), signalAt('resume')];
  assert.ok(p >= 0 && r > p, 'pause and resume signals in the history');
  assert.deepEqual(scheduledActivities(events.slice(p, r)), [], 'no activity scheduled while paused');
  assert.ok(scheduledActivities(events.slice(r)).includes('trainShard'), 'training was scheduled after resume');
  const shardEnd = events
    .slice(p, r)
    .reverse()
    .find((e) =>
      ['EVENT_TYPE_ACTIVITY_TASK_CANCELED', 'EVENT_TYPE_ACTIVITY_TASK_COMPLETED'].includes(eventTypeName(e)),
    );
  assert.ok(shardEnd, 'the running shard ended after the pause signal');
  const linesWhilePaused = fs
    .readFileSync(path.join(stageDir, 'metrics.jsonl'), 'utf8')
    .split('\n')
    .filter(Boolean)
    .map((l) => Date.parse((JSON.parse(l) as { time: string }).time))
    .filter((t) => t > eventMs(shardEnd) && t < eventMs(events[r]!));
  assert.deepEqual(linesWhilePaused, [], 'no metrics line between the shard end and resume');
  assert.equal(result.until, '3s');
  assert.equal(fs.existsSync(path.join(runs, job, '9s')), false, 'no stage after until ran');
});

test('cancelling saves a checkpoint, then stops', async () => {
  const { h, stageDir } = await startAndTrain3Steps('cancel-job', {
    'training.steps': 200,
    'checkpoint.interval': 100,
  });
  await h.cancel();
  await assert.rejects(
    h.result(),
    (e: unknown) => e instanceof WorkflowFailedError && /cancel/i.test(String(e.cause?.message ?? e.message)),
  );
  assert.equal((await h.describe()).status.name, 'CANCELLED');
  const trained = metricSteps(stageDir);
  const ck = latestCompleteCheckpoint(path.join(stageDir, 'checkpoints'));
  assert.equal(ck?.state.step, trained[trained.length - 1], 'the checkpoint holds the last trained step');
  assert.ok(ck!.state.step > 0 && ck!.state.step < 100);
});

test('bad configs fail fast with a non-retryable error that names the field', async () => {
  const cases: [string, Record<string, unknown>, RegExp][] = [
    ['unknown-field', { 'training.bogus': 1 }, /training\.bogus = 1: unknown field/],
    ['wrong-type', { 'training.steps': 'ten' }, /training\.steps = "ten": .*expected number/],
    ['mesh', { 'parallelism.dp_sharding': 2 }, /parallelism\.dp_replicate\*dp_sharding\*tp_sharding = "1\*2\*1 = 2"/],
    [
      'mini-batch',
      { 'model.text_length': 13 },
      /model\.text_length = 13: .*not a multiple of .*mini_batch_size = 64.*Fix: set model\.text_length = /,
    ],
    [
      'dataset',
      // Inside the folder the worker allows (--allow-path), so that the check is "does it exist".
      { 'training.dataset_path': path.join(runs, 'nonexistent', 'precomp') },
      /training\.dataset_path = ".*\/nonexistent\/precomp": no such directory/,
    ],
    [
      'dataset-outside',
      { 'training.dataset_path': '/nonexistent/precomp' },
      /training\.dataset_path = "\/nonexistent\/precomp": resolves to \/nonexistent\/precomp, outside the folders this worker lets job inputs read .*--allow-path/,
    ],
  ];
  for (const [name, set, pattern] of cases) {
    const h = await startJob(
      env.c,
      { jobName: `bad-${name}`, curriculum: 'configs/curriculum/tiny.toml', set: { ...base, ...set } },
      { taskQueue: queue },
    );
    const err = await h.result().then(
      () => assert.fail(`${name}: the job should fail`),
      (e: unknown) => e,
    );
    assert.ok(err instanceof WorkflowFailedError, `${name}: ${String(err)}`);
    const act = err.cause;
    assert.ok(act instanceof ActivityFailure, `${name}: failed in an activity`);
    const app = act.cause;
    assert.ok(app instanceof ApplicationFailure, `${name}: application failure`);
    assert.equal(app.nonRetryable, true, `${name}: non-retryable`);
    assert.equal(app.type, 'ConfigError');
    assert.match(app.message, pattern, `${name}: message names the field`);
    const events = await historyEvents(env.c, `bad-${name}`);
    const starts = events.filter((e) => eventTypeName(e) === 'EVENT_TYPE_ACTIVITY_TASK_STARTED');
    assert.equal(starts.length, 1);
    assert.equal(starts[0]!.activityTaskStartedEventAttributes?.attempt, 1, `${name}: never retried`);
    // Fast = at planning, before anything else: the only activity scheduled was the plan.
    assert.deepEqual(scheduledActivities(events), ['planCurriculum'], `${name}: failed at planning`);
  }
});

test('an invalid job name is refused before any path is built from it', async () => {
  await assert.rejects(
    startJob(env.c, { jobName: '../escape', curriculum: 'configs/curriculum/tiny.toml' }),
    /invalid job name/,
  );
});

test('watch shows the stage and step advance; status --json gives the same information once', async () => {
  const job = 'watch-job';
  const h = await startJob(
    env.c,
    {
      jobName: job,
      curriculum: 'configs/curriculum/tiny.toml',
      until: '3s',
      set: { ...base, 'training.steps': 30, 'checkpoint.interval': 10 },
    },
    { taskQueue: queue },
  );
  const { spawn } = await import('node:child_process');
  const { CLI, ROOT } = await import('../helpers');
  const watch = spawn(
    process.execPath,
    [CLI, 'watch', job, '--no-tty', '--interval', '200', '--address', env.srv.address],
    { cwd: ROOT, stdio: ['ignore', 'pipe', 'pipe'], env: { ...process.env, TTT_LOG_LEVEL: 'warn' } },
  );
  let out = '';
  const waiting: { re: RegExp; resolve: () => void }[] = [];
  watch.stdout.on('data', (b: Buffer) => {
    out += b.toString();
    for (const w of waiting.filter((x) => x.re.test(out))) {
      waiting.splice(waiting.indexOf(w), 1);
      w.resolve();
    }
  });
  // The step is frozen, so waiting longer cannot change what watch shows: the limit is a hang
  // guard (watch never printing the step), far above its polls and the heartbeat throttling.
  const watchShows = (re: RegExp): Promise<void> =>
    re.test(out)
      ? Promise.resolve()
      : new Promise((resolve, reject) => {
          waiting.push({ re, resolve });
          setTimeout(() => reject(new Error(`watch never showed ${re}:\n${out}`)), 180_000).unref();
        });
  const exited = new Promise<number | null>((resolve) => watch.once('exit', (c) => resolve(c)));
  // Intermediate steps, whatever the machine's speed: the training child is frozen (SIGSTOP) at a
  // metrics line, and continued only once watch has printed that step.
  const stageDir = path.join(runs, job, '3s');
  const marker = `${path.join(runs, job)}"`;
  const seenFrozen: number[] = [];
  for (const atLeast of [3, 15]) {
    const frozen = await freezeTrainingWhen(stageDir, marker, (last) => last >= atLeast);
    assert.ok(frozen.last < 30, `frozen before the end: step ${frozen.last}`);
    // The child writes step L's metrics line, then its progress line: frozen at line L, it has
    // reported L - 1 for certain and L perhaps, so watch shows L - 1 or L.
    const re = new RegExp(`stage 3s, step (${frozen.last - 1}|${frozen.last})/30`, 'g');
    await watchShows(new RegExp(re.source));
    seenFrozen.push(Number([...out.matchAll(re)].pop()![1]));
    process.kill(frozen.pid, 'SIGCONT');
  }
  const code = await exited;
  assert.equal(code, 0);
  await h.result();
  const steps = [...out.matchAll(/stage 3s, step (\d+)\/30/g)].map((m) => Number(m[1]));
  for (const s of seenFrozen) assert.ok(steps.includes(s), `watch showed step ${s}: ${steps.join(',')}`);
  assert.deepEqual(
    steps,
    [...steps].sort((a, b) => a - b),
    'steps only go forward',
  );
  assert.match(out, /stage 3s, step 30\/30, loss \d[\d.e-]* \[completed\]/);
  const json = JSON.parse(
    await new Promise<string>((resolve) => {
      const p = spawn(process.execPath, [CLI, 'status', job, '--json', '--address', env.srv.address], {
        cwd: ROOT,
        stdio: ['ignore', 'pipe', 'inherit'],
      });
      let s = '';
      p.stdout.on('data', (b: Buffer) => (s += b.toString()));
      p.once('exit', () => resolve(s));
    }),
  ) as { status: string; stages: { stage: string; step: number; totalSteps: number; done: boolean }[] };
  assert.equal(json.status, 'COMPLETED');
  assert.deepEqual(
    json.stages.map((s) => [s.stage, s.step, s.totalSteps, s.done]),
    [['3s', 30, 30, true]],
  );
});
