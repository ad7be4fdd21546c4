/**
 * The validation loss (src/train/validation.ts): a deterministic function of the weights on fixed
 * samples, timesteps and noise, written to metrics.jsonl at the stage's start, every
 * validation.interval steps and at its end; it never changes training (same steps, same
 * checkpoint bytes with it on or off), the value at a checkpointed step is the same after a
 * resume and when measured again from that checkpoint, and it shows stage 1 learning where the
 * single-step loss (one random timestep per step) does not.
 */
import assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { test } from 'node:test';
import { initBackend, tf } from '../../src/backend';
import { loadCheckpoint, verifyCheckpoint } from '../../src/checkpoint/store';
import { modelDims } from '../../src/config/dims';
import { loadStageConfig } from '../../src/config/load';
import { ConfigError } from '../../src/errors';
import { promoteStage } from '../../src/job';
import type { Progress, ShardProgress } from '../../src/shared/types';
import { statusLine, summarise } from '../../src/temporal/status';
import { ropeForModel } from '../../src/model/dit';
import { readMetricsFile, stageValidation } from '../../src/train/metrics';
import { ModelState } from '../../src/train/model-state';
import { runShard } from '../../src/train/shard';
import { spreadIds, Validation, validationDue } from '../../src/train/validation';
import { ROOT, tmpDir } from '../helpers';

const CFG = path.join(ROOT, 'configs/train/tiny/3s.toml');
const UNBOUNDED = Number.POSITIVE_INFINITY;
/** 6 steps, a checkpoint every 3, the validation loss every 2 (and at 0 and 6). */
const SHORT = {
  'training.steps': 6,
  'training.global_batch_size': 1,
  'checkpoint.interval': 3,
  'validation.interval': 2,
};

const metricsOf = (jobDir: string) => readMetricsFile(path.join(jobDir, '3s', 'metrics.jsonl'));
const ckFile = (jobDir: string, step: number, f: string): Buffer =>
  fs.readFileSync(path.join(jobDir, '3s', 'checkpoints', `step-${String(step).padStart(8, '0')}`, f));

test('which steps are measured, which samples, and the config fields', () => {
  const v = { samples: 2, timesteps: [500], interval: 0, batch_size: 1 };
  assert.deepEqual(
    [0, 1, 5, 10].filter((s) => validationDue(v, s, 10)),
    [0, 10],
    'interval 0: the start and the end',
  );
  assert.deepEqual(
    [0, 1, 3, 4, 6, 7].filter((s) => validationDue({ ...v, interval: 3 }, s, 7)),
    [0, 3, 6, 7],
    'every interval steps, and the end',
  );
  assert.equal(validationDue({ ...v, samples: 0 }, 0, 10), false, 'samples = 0: never');
  assert.deepEqual(spreadIds(64, 4), [0, 16, 32, 48]);
  assert.deepEqual(spreadIds(3, 5), [0, 1, 2]);
  const c = loadStageConfig(CFG);
  assert.deepEqual(c.config.validation, { samples: 2, timesteps: [250, 500, 750], batch_size: 6, interval: 10 });
  assert.equal(
    loadStageConfig(CFG, { 'validation.samples': 0, 'validation.interval': 3 }).hash,
    c.hash,
    'validation settings are not part of the config hash (they never change training)',
  );
  assert.notEqual(loadStageConfig(CFG, { 'training.seed': 1 }).hash, c.hash);
  assert.throws(
    () => loadStageConfig(CFG, { 'validation.timesteps': '[250, 1000]' }),
    (e: unknown) => e instanceof ConfigError && /validation\.timesteps/.test(e.message),
  );
});

test('validation never changes training: the same steps and checkpoint bytes with it on or off', async () => {
  const on = tmpDir('val-on');
  const off = tmpDir('val-off');
  const reports: ShardProgress[] = [];
  const a = await runShard(
    { configFile: CFG, overrides: SHORT, jobDir: on, initFrom: null, maxSeconds: UNBOUNDED },
    { onProgress: (p) => reports.push(p) },
  );
  const b = await runShard({
    configFile: CFG,
    overrides: { ...SHORT, 'validation.samples': 0 },
    jobDir: off,
    initFrom: null,
    maxSeconds: UNBOUNDED,
  });
  assert.equal(a.step, 6);
  assert.equal(b.step, 6);
  const [ma, mb] = [metricsOf(on), metricsOf(off)];
  assert.deepEqual(
    ma.validation.map((v) => v.step),
    [0, 2, 4, 6],
  );
  assert.deepEqual(mb.validation, [], 'validation.samples = 0: no validation line');
  const training = (m: typeof ma) => m.steps.map((s) => [s.step, s.loss, s.grad_norm, s.lr, s.lr_ssm]);
  assert.deepEqual(training(ma), training(mb), 'the same steps: losses, gradient norms, learning rates');
  // Every step line says what it ran on (a Slurm job's progress is read from these lines).
  for (const s of ma.steps) assert.deepEqual([s.backend, s.device], [a.backend, a.device], `step ${s.step}`);
  assert.ok(a.backend !== undefined && a.device !== undefined && a.device !== '');
  assert.deepEqual(
    reports.map((p) => [p.step, p.backend, p.device]),
    ma.steps.map((s) => [s.step, a.backend, a.device]),
    'and every progress report',
  );
  for (const step of [0, 3, 6])
    for (const f of ['model.safetensors', 'optimizer.safetensors'])
      assert.ok(ckFile(on, step, f).equals(ckFile(off, step, f)), `step ${step} ${f}: byte-identical`);
  const state = (dir: string) => JSON.parse(ckFile(dir, 6, 'state.json').toString()) as Record<string, unknown>;
  const { createdAt: _a, ...sa } = state(on);
  const { createdAt: _b, ...sb } = state(off);
  assert.deepEqual(sa, sb, 'state.json too, but for its creation time');
  assert.deepEqual([a.valLoss, a.valStep], [ma.validation[3]!.val_loss, 6], 'the shard result has the last one');
  assert.deepEqual([b.valLoss, b.valStep], [null, null]);
});

test('the validation loss is a function of the weights: the same after a resume and measured again from a checkpoint', async () => {
  const straight = tmpDir('val-straight');
  const resumed = tmpDir('val-resumed');
  const req = (jobDir: string, maxSteps?: number) => ({
    configFile: CFG,
    overrides: SHORT,
    jobDir,
    initFrom: null,
    maxSeconds: UNBOUNDED,
    ...(maxSteps ? { maxSteps } : {}),
  });
  await runShard(req(straight));
  const first = await runShard(req(resumed, 4));
  assert.deepEqual([first.step, first.reason], [4, 'steps']);
  const second = await runShard(req(resumed));
  assert.deepEqual([second.startStep, second.step], [4, 6]);
  const vs = metricsOf(straight).validation.map((v) => [v.step, v.val_loss]);
  const vr = metricsOf(resumed).validation.map((v) => [v.step, v.val_loss]);
  assert.deepEqual(
    vr.map(([s]) => s),
    [0, 2, 4, 6],
    'each measured once: the shard that resumed from step 4 does not measure it again',
  );
  assert.deepEqual(vr, vs, 'the values of an uninterrupted run');
  for (const f of ['model.safetensors', 'optimizer.safetensors'])
    assert.ok(ckFile(straight, 6, f).equals(ckFile(resumed, 6, f)), `step 6 ${f}: byte-identical`);

  // Measured again, in this process, from the checkpoints at steps 4 and 6: the recorded values.
  await initBackend('auto');
  const stage = loadStageConfig(CFG, SHORT);
  const dims = modelDims(stage.config);
  const model = new ModelState(stage, dims);
  const rope = ropeForModel(dims);
  const measure = (config = stage.config) => new Validation(config, dims, rope).measure(model.params).loss;
  try {
    for (const step of [4, 6]) {
      model.loadWeights(loadCheckpoint(path.join(resumed, '3s', 'checkpoints', `step-0000000${step}`)).model, 'ck');
      const recorded = vr.find(([s]) => s === step)![1]!;
      const tensors = tf.memory().numTensors;
      assert.equal(measure(), recorded, `step ${step}: the recorded value, exactly`);
      assert.equal(tf.memory().numTensors, tensors, 'no tensor is left behind');
      assert.equal(measure(), recorded, `step ${step}: measuring twice gives the same value`);
      const one = measure({ ...stage.config, validation: { ...stage.config.validation, batch_size: 1 } });
      assert.ok(Math.abs(one - recorded) <= 1e-6 * recorded, `step ${step}: batch size 1 gives ${one} ~ ${recorded}`);
    }
  } finally {
    model.dispose();
  }
});

test('stage 1 learns: the validation loss falls; promotion reports its start and end', async () => {
  const jobDir = tmpDir('val-learn');
  const overrides = { 'training.steps': 12, 'training.global_batch_size': 1, 'validation.interval': 4 };
  const r = await runShard({ configFile: CFG, overrides, jobDir, initFrom: null, maxSeconds: UNBOUNDED });
  const m = metricsOf(jobDir);
  const val = m.validation.map((v) => v.val_loss);
  assert.deepEqual(
    m.validation.map((v) => v.step),
    [0, 4, 8, 12],
  );
  assert.ok(val[3]! < 0.8 * val[0]!, `the validation loss fell by more than 20%: ${val.join(' -> ')}`);
  assert.deepEqual([r.valLoss, r.valStep], [val[3], 12]);
  const final = promoteStage(jobDir, '3s', 12);
  assert.deepEqual([final.valLossStart, final.valLossEnd], [val[0], val[3]]);
  assert.ok(verifyCheckpoint(final.finalCheckpoint).ok);
  // A step redone (after a crash) writes its validation line again with the same value; the last one counts.
  const again = [...m.validation, { ...m.validation[3]!, val_loss: 0.123 }];
  assert.deepEqual(stageValidation(again, 12), { valLossStart: val[0], valLossEnd: 0.123 });
  assert.deepEqual(stageValidation([], 12), { valLossStart: null, valLossEnd: null });
});

test('status: a finished stage shows its validation loss at start and end, the running one its latest', () => {
  const done = {
    stage: '3s',
    steps: 40,
    finalCheckpoint: '/j/3s/final',
    modelSha256: 'x',
    firstLoss: 0.85,
    lastLoss: 0.66,
    valLossStart: 0.9684,
    valLossEnd: 0.4986,
    wallSeconds: 20,
  };
  const progress: Progress = {
    jobName: 'j',
    jobDir: '/j',
    state: 'running',
    stage: '9s',
    stageIndex: 1,
    stages: ['3s', '9s'],
    stageSteps: [40, 12],
    until: '9s',
    step: 4,
    totalSteps: 12,
    lastLoss: 0.5,
    valLoss: 0.4946,
    valStep: 0,
    lastCheckpoint: null,
    completed: [done],
  };
  const hb: ShardProgress = { stage: '9s', step: 6, totalSteps: 12, loss: 0.6, gradNorm: 1, stepSeconds: 0.5 };
  // The heartbeat has no validation loss yet: the workflow's (step 0) stands, and is the start value.
  let s = summarise('j', 'RUNNING', progress, hb, null, 'polling', 1, null);
  assert.deepEqual(
    s.stages.map((x) => [x.stage, x.valLossStart, x.valLoss, x.valStep]),
    [
      ['3s', 0.9684, 0.4986, 40],
      ['9s', 0.4946, 0.4946, 0],
    ],
  );
  assert.deepEqual([s.valLoss, s.valStep], [0.4946, 0]);
  assert.equal(statusLine({ ...s, connection: null }), 'j: stage 9s, step 6/12, loss 0.6; val loss 0.4946 at step 0');
  // A newer one in the heartbeat wins; the start value is then not known to status.
  s = summarise('j', 'RUNNING', progress, { ...hb, valLoss: 0.49, valStep: 6 }, null, 'polling', 1, null);
  assert.deepEqual([s.stages[1]!.valLoss, s.stages[1]!.valStep, s.stages[1]!.valLossStart], [0.49, 6, null]);
  // A completed job: from its result, start -> end; older results without the fields show none.
  const result = { jobName: 'j', curriculum: 'c', until: '3s', stages: [done] };
  s = summarise('j', 'COMPLETED', undefined, undefined, result, 'unknown', null, null);
  assert.equal(
    statusLine({ ...s, connection: null }),
    'j: stage 3s, step 40/40, loss 0.66 [completed]; val loss 0.9684 -> 0.4986',
  );
  const { valLossStart: _s, valLossEnd: _e, ...older } = done;
  s = summarise('j', 'COMPLETED', undefined, undefined, { ...result, stages: [older] }, 'unknown', null, null);
  assert.deepEqual([s.valLoss, s.stages[0]!.valLossStart], [null, null]);
  assert.equal(statusLine({ ...s, connection: null }), 'j: stage 3s, step 40/40, loss 0.66 [completed]');
});
