/**
 * Stage 1 from CogVideoX weights through the workflow, on a real dev server: the job converts the
 * diffusers folder that checkpoint.init_state_dir names (a convertInit activity; the folder is
 * saved by the real diffusers library) into <job>/init and trains from it; malformed weights fail the job at once, non-retryably, with the problem.
 */
import assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { test } from 'node:test';
import { WorkflowFailedError } from '@temporalio/client';
import { ActivityFailure, ApplicationFailure } from '@temporalio/common';
import { startJob } from '../../src/temporal/client';
import { loadModelWeights, tensorsHash, verifyCheckpoint } from '../../src/checkpoint/store';
import { writeSyntheticDiffusers } from '../../src/convert/synth';
import type { CurriculumResult } from '../../src/shared/types';
import { eventTypeName, historyEvents, scheduledActivities, sharedServer } from '../helpers';
import { assertConvertedFromDiffusers, diffusersFixture, TINY } from '../unit/fixtures';

const env = sharedServer('convert-job', 'convert');
const { dir, runs, queue } = env;

const base = {
  'job.dump_folder': runs,
  'training.global_batch_size': 1,
  'training.steps': 4,
  'checkpoint.interval': 4,
};

test('stage 1 of the tiny curriculum starts from the converted CogVideoX weights', async () => {
  const from = path.join(dir, 'cogvideox');
  const fx = diffusersFixture(from); // saved by diffusers: BF16, 4 shards
  const job = 'from-cogvideox';
  const h = await startJob(
    env.c,
    {
      jobName: job,
      curriculum: 'configs/curriculum/tiny.toml',
      until: '3s',
      set: { ...base, 'checkpoint.init_state_dir': from },
    },
    { taskQueue: queue },
  );
  const result = (await h.result()) as CurriculumResult;
  assert.deepEqual(
    result.stages.map((s) => [s.stage, s.steps]),
    [['3s', 4]],
  );
  const init = path.join(runs, job, 'init');
  assert.ok(fs.existsSync(path.join(init, 'convert.json')), 'converted into <job>/init');
  const converted = loadModelWeights(init);
  // The converted weights are torch's values under the names TTT-Video-DiT's converter gives them...
  assertConvertedFromDiffusers(fx, (n) => converted.get(n), 'converted into <job>/init');
  // ...and stage 1 started from them.
  const final = verifyCheckpoint(result.stages[0]!.finalCheckpoint);
  assert.ok(final.ok);
  assert.equal(final.state.initHash, tensorsHash(converted), 'stage 1 init = the converted weights');
  const activities = (await historyEvents(env.c, job))
    .filter((e) => eventTypeName(e) === 'EVENT_TYPE_ACTIVITY_TASK_SCHEDULED')
    .map((e) => e.activityTaskScheduledEventAttributes?.activityType?.name);
  assert.deepEqual(activities.slice(0, 3), ['planCurriculum', 'inspectStage', 'convertInit']);
  assert.equal(activities.filter((a) => a === 'convertInit').length, 1);
});

test('malformed CogVideoX weights fail the job at once with a clear, non-retryable error', async () => {
  const cases: [string, (from: string) => void, string, RegExp][] = [
    [
      'unknown-key',
      (from) =>
        void writeSyntheticDiffusers(from, TINY, {
          shards: 2,
          tensors: (l) => [...l, { name: 'transformer_blocks.0.attn1.to_k.lora_A.weight', shape: [4, 32] }],
        }),
      'ConvertError',
      /unknown tensors .*: transformer_blocks\.0\.attn1\.to_k\.lora_A\.weight[\s\S]*Fix: /,
    ],
    [
      'truncated',
      (from) => {
        const [first] = writeSyntheticDiffusers(from, TINY, { shards: 2 });
        fs.truncateSync(first!, 100);
      },
      'ConvertError',
      /diffusion_pytorch_model-00001-of-00002\.safetensors: header length \d+ runs past the end of the 100-byte file\. Fix: /,
    ],
    [
      'sizes',
      (from) => void writeSyntheticDiffusers(from, { ...TINY, num_layers: 3 }, { shards: 1 }),
      'ConfigError',
      /model\.num_layers = 2: the CogVideoX weights in checkpoint\.init_state_dir \(.*config\.json\) have num_layers = 3\. Fix: set model\.num_layers = 3/,
    ],
  ];
  for (const [name, prepare, type, pattern] of cases) {
    const from = path.join(dir, `bad-${name}`);
    prepare(from);
    const job = `bad-weights-${name}`;
    const h = await startJob(
      env.c,
      {
        jobName: job,
        curriculum: 'configs/curriculum/tiny.toml',
        until: '3s',
        set: { ...base, 'checkpoint.init_state_dir': from },
      },
      { taskQueue: queue },
    );
    const err = await h.result().then(
      () => assert.fail(`${name}: the job should fail`),
      (e: unknown) => e,
    );
    assert.ok(err instanceof WorkflowFailedError, `${name}: ${String(err)}`);
    assert.ok(err.cause instanceof ActivityFailure, `${name}: failed in an activity`);
    const app = err.cause.cause;
    assert.ok(app instanceof ApplicationFailure, `${name}: application failure`);
    assert.equal(app.nonRetryable, true, `${name}: non-retryable`);
    assert.equal(app.type, type, name);
    assert.match(app.message, pattern, `${name}: ${app.message}`);
    const events = await historyEvents(env.c, job);
    const starts = events.filter((e) => eventTypeName(e) === 'EVENT_TYPE_ACTIVITY_TASK_STARTED');
    assert.ok(
      starts.every((s) => s.activityTaskStartedEventAttributes?.attempt === 1),
      `${name}: never retried`,
    );
    // Fast = before any training: no trainShard was ever scheduled.
    const scheduled = scheduledActivities(events);
    assert.equal(scheduled.includes('trainShard'), false, `${name}: failed before training (${scheduled.join(', ')})`);
    assert.equal(fs.existsSync(path.join(runs, job, '3s')), false, `${name}: no training`);
  }
});
