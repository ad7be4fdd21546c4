/**
 * Backend selection you can see: `auto` takes tensorflow when it loads, and the one description
 * of the backend (describeBackend) reaches status --json and the metric labels.
 */
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import * as os from 'node:os';
import * as path from 'node:path';
import { test } from 'node:test';
import type { MetricMeter, MetricTags } from '@temporalio/common';
import { trainingMetrics } from '../../src/temporal/metrics';
import { summarise } from '../../src/temporal/status';
import { ROOT } from '../helpers';
import { nativeSkip } from '../native';

test('runtime.backend = "auto" takes tensorflow when it loads, and describes its device', (t) => {
  const skip = nativeSkip();
  if (skip) return t.skip(skip);
  // A fresh process: the choice is made once per process.
  const out = execFileSync(
    process.execPath,
    [
      '-e',
      `const b = require(${JSON.stringify(path.join(ROOT, 'dist/src/backend.js'))});
       b.initBackend('auto').then((name) => console.log(JSON.stringify({ name, info: b.describeBackend() })));`,
    ],
    { encoding: 'utf8' },
  );
  const r = JSON.parse(out) as { name: string; info: Record<string, unknown> };
  assert.equal(r.name, 'tensorflow');
  assert.equal(r.info.name, 'tensorflow');
  assert.equal(r.info.device, 'cpu'); // this machine has no GPU; scripts/gpu-check.sh checks "gpu" on one that has
  assert.equal(r.info.deviceName, os.cpus()[0]!.model.trim());
  assert.equal(r.info.threads, os.availableParallelism());
  assert.match(r.info.package as string, /^@tensorflow\/tfjs-node(-gpu)?$/);
  assert.equal(r.info.deviceText, `cpu: ${os.cpus()[0]!.model.trim()}, ${os.availableParallelism()} threads`);
});

test('the shard backend reaches status --json (from the heartbeat) and the step metrics as labels', () => {
  const device = 'gpu: NVIDIA H100 80GB HBM3';
  const hb = {
    stage: '3s',
    step: 2,
    totalSteps: 10,
    loss: 0.5,
    gradNorm: 1,
    stepSeconds: 0.1,
    backend: 'tensorflow',
    device,
  };
  const progress = {
    state: 'running',
    stage: '3s',
    step: 1,
    lastLoss: 0.6,
    stages: ['3s'],
    stageSteps: [10],
    completed: [],
    lastCheckpoint: null,
    jobDir: '/tmp/j',
    until: '3s',
  };
  const s = summarise('j', 'RUNNING', progress as never, hb, null, 'polling', 1, null);
  assert.equal(s.backend, 'tensorflow');
  assert.equal(s.device, device);
  assert.equal(summarise('j', 'RUNNING', progress as never, undefined, null, 'polling', 1, null).backend, null);

  const recorded: { name: string; tags: MetricTags }[] = [];
  const instrument = (name: string) => {
    const rec = (_v: number, tags: MetricTags = {}) => recorded.push({ name, tags });
    return { add: rec, set: rec, record: rec };
  };
  const meter = {
    withTags: () => meter,
    createCounter: instrument,
    createGauge: instrument,
    createHistogram: instrument,
  } as unknown as MetricMeter;
  trainingMetrics(meter, { job: 'j', stage: '3s' }).step({
    stage: '3s',
    step: 2,
    totalSteps: 10,
    loss: 0.5,
    gradNorm: 1,
    stepSeconds: 0.1,
    backend: 'tensorflow',
    device,
  });
  assert.deepEqual(
    recorded.map((r) => r.name),
    ['ttt_steps', 'ttt_step', 'ttt_loss', 'ttt_grad_norm', 'ttt_step_seconds'],
  );
  for (const r of recorded) assert.deepEqual(r.tags, { backend: 'tensorflow', device }, r.name);
  // A progress report that carries a validation loss also sets ttt_val_loss.
  recorded.length = 0;
  trainingMetrics(meter, { job: 'j', stage: '3s' }).step({ ...hb, valLoss: 0.4, valStep: 2 });
  assert.ok(
    recorded.some((r) => r.name === 'ttt_val_loss'),
    recorded.map((r) => r.name).join(','),
  );
});
