/**
 * The tiny five-stage curriculum end to end on a real dev server, started with the `temporal`
 * CLI exactly as the README shows; every stage starts from the previous stage's final weights
 * and trains the right parameter set; the result reports each stage's validation loss at its
 * start and end.
 */
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { after, before, test } from 'node:test';
import { readSafetensors, type FloatTensor } from '../../src/io/safetensors';
import { tensorsHash, verifyCheckpoint } from '../../src/checkpoint/store';
import { loadStageConfig } from '../../src/config/load';
import { progressQuery } from '../../src/temporal/client';
import { modelDims } from '../../src/config/dims';
import { initialValue, isTrainable, paramSpecs } from '../../src/model/params';
import { temporalCli, type DevServer } from '../../src/temporal/devserver';
import type { CurriculumResult } from '../../src/shared/types';
import { client, ROOT, server, spawnWorker, tmpDir, type WorkerProc } from '../helpers';

let srv: DevServer;
let worker: WorkerProc;
const dir = tmpDir('full');
const queue = 'full-run';

before(async () => {
  srv = await server(path.join(dir, 'temporal.sqlite'));
  worker = spawnWorker(srv.address, queue, {}, ['--allow-path', dir]);
  await worker.ready;
});

after(async () => {
  await worker?.kill('SIGTERM');
  await srv?.stop();
});

const model = (dir: string): Map<string, FloatTensor> => readSafetensors(path.join(dir, 'model.safetensors')).tensors;
const same = (a: FloatTensor, b: FloatTensor): boolean =>
  a.data.length === b.data.length && a.data.every((x, i) => x === b.data[i]);

test('the tiny curriculum completes all five stages, each from the previous final weights', async () => {
  const job = 'full-run-job';
  const input = {
    jobName: job,
    curriculum: 'configs/curriculum/tiny.toml',
    set: { 'job.dump_folder': path.join(dir, 'runs') },
    until: '63s',
  };
  // Started with the temporal CLI, as in the README.
  execFileSync(
    temporalCli(),
    [
      'workflow',
      'start',
      '--address',
      srv.address,
      '--type',
      'trainCurriculum',
      '--task-queue',
      queue,
      '--workflow-id',
      job,
      '--input',
      JSON.stringify(input),
    ],
    { cwd: ROOT, stdio: 'pipe' },
  );
  const c = await client(srv.address);
  const handle = c.workflow.getHandle(job);
  const result = (await handle.result()) as CurriculumResult;

  const expected = ['3s', '9s', '18s', '30s', '63s'].map((s) =>
    loadStageConfig(path.join(ROOT, `configs/train/tiny/${s}.toml`)),
  );
  assert.deepEqual(
    result.stages.map((s) => s.stage),
    ['3s', '9s', '18s', '30s', '63s'],
  );
  for (const [i, st] of result.stages.entries()) {
    assert.equal(st.steps, expected[i]!.config.training.steps, `${st.stage}: step count`);
    assert.ok(
      fs.existsSync(path.join(st.finalCheckpoint, 'model.safetensors')),
      `${st.stage}: final holds model.safetensors`,
    );
    const v = verifyCheckpoint(st.finalCheckpoint);
    assert.ok(v.ok && v.state.step === st.steps, `${st.stage}: final checkpoint is complete at its last step`);
    assert.ok(typeof st.firstLoss === 'number' && typeof st.lastLoss === 'number' && st.wallSeconds > 0);
    assert.ok(
      typeof st.valLossStart === 'number' && typeof st.valLossEnd === 'number',
      `${st.stage}: validation loss at the start and the end of the stage`,
    );
  }
  // What the validation loss (fixed samples, timesteps and noise) says about the tiny curriculum:
  // stage 1 (sft, 40 steps) learns; stages 2-5 (qkvo, 4-12 steps) barely move, whatever their
  // first and last single-step losses (one random timestep each) seem to say.
  const [s1, ...later] = result.stages;
  assert.ok(
    s1!.valLossEnd! < 0.8 * s1!.valLossStart!,
    `stage 3s learns: validation loss ${s1!.valLossStart} -> ${s1!.valLossEnd}`,
  );
  for (const st of later) {
    const change = Math.abs(st.valLossEnd! - st.valLossStart!) / st.valLossStart!;
    assert.ok(change < 0.01, `stage ${st.stage}: validation loss ${st.valLossStart} -> ${st.valLossEnd} (within 1%)`);
  }

  // Stage 1 starts from a fresh initialisation and changes every parameter.
  const d0 = modelDims(expected[0]!.config);
  const specs = paramSpecs(d0);
  const fresh = new Map(
    specs.map((s) => [s.name, { shape: s.torchShape, data: initialValue(s, expected[0]!.config.training.seed) }]),
  );
  const finals = result.stages.map((s) => model(s.finalCheckpoint));
  const unchanged1 = specs.filter((s) => same(fresh.get(s.name)!, finals[0]!.get(s.name)!)).map((s) => s.name);
  assert.deepEqual(unchanged1, [], 'stage 1 (sft) changes every parameter');
  assert.equal(
    (verifyCheckpoint(result.stages[0]!.finalCheckpoint) as { state: { initHash: string } }).state.initHash,
    tensorsHash(fresh),
  );

  // Stages 2-5: init = previous final (content hash), and only TTT, gates, q/k/v/o (and q/k norms) change.
  for (let k = 1; k < 5; k++) {
    const prev = finals[k - 1]!;
    const cur = finals[k]!;
    const state = verifyCheckpoint(result.stages[k]!.finalCheckpoint);
    assert.ok(state.ok);
    assert.equal(
      state.state.initHash,
      tensorsHash(prev),
      `stage ${result.stages[k]!.stage} started from stage ${result.stages[k - 1]!.stage}'s final weights`,
    );
    const changed = specs.filter((s) => !same(prev.get(s.name)!, cur.get(s.name)!)).map((s) => s.name);
    const wrong = changed.filter((n) => !isTrainable(n, 'qkvo'));
    assert.deepEqual(wrong, [], `stage ${result.stages[k]!.stage} changed only qkvo-trainable parameters`);
    const trainable = specs.filter((s) => isTrainable(s.name, 'qkvo')).map((s) => s.name);
    assert.deepEqual(
      changed.sort(),
      trainable.sort(),
      `stage ${result.stages[k]!.stage} changed every qkvo-trainable parameter`,
    );
  }

  const progress = await handle.query(progressQuery);
  assert.equal(progress.state, 'completed');
  assert.equal(progress.completed.length, 5);
  await c.connection.close();
});
