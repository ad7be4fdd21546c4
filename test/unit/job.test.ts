/**
 * Stage 1's init weights, decided once (src/job.ts stageInit) for the plan and for
 * `ttt-curriculum train`, and prepared outside the workflow by prepareInit.
 */
import { allowedRoots } from '../../src/allowed-paths';
import assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { test } from 'node:test';
import { latestCompleteCheckpoint, saveCheckpoint } from '../../src/checkpoint/store';
import { writeSyntheticDiffusers } from '../../src/convert/synth';
import { planCurriculum, prepareInit, stageInit } from '../../src/job';
import { checkpointsDir, convertedInitDir, stageDir } from '../../src/paths';
import { tmpDir } from '../helpers';
import { TINY } from './fixtures';

test('stageInit: nothing is a fresh start, a weights folder is used as is, CogVideoX diffusers weights convert into <job>/init', () => {
  const dir = tmpDir('stage-init');
  const job = path.join(dir, 'runs', 'j');
  const weights = path.join(dir, 'weights');
  fs.mkdirSync(weights);
  const cog = path.join(dir, 'cogvideox');
  writeSyntheticDiffusers(cog, TINY, { seed: 3 });
  assert.deepEqual(stageInit('', job), { initStateDir: null, convertFrom: null });
  assert.deepEqual(stageInit(weights, job), { initStateDir: weights, convertFrom: null });
  assert.deepEqual(stageInit(path.relative(process.cwd(), weights), job), { initStateDir: weights, convertFrom: null });
  assert.deepEqual(stageInit(cog, job), { initStateDir: convertedInitDir(job), convertFrom: cog });
});

test('the plan takes stage 1 init from stageInit; later stages start from the stage before', () => {
  const dir = tmpDir('plan-init');
  const cog = path.join(dir, 'cogvideox');
  writeSyntheticDiffusers(cog, TINY, { seed: 3 });
  const plan = planCurriculum(
    {
      jobName: 'j',
      curriculum: 'configs/curriculum/tiny.toml',
      set: { 'job.dump_folder': path.join(dir, 'runs'), 'checkpoint.init_state_dir': cog },
    },
    allowedRoots({ allowPaths: [dir] }),
  );
  assert.deepEqual(
    plan.stages.map((s) => [s.name, s.initStateDir, s.convertFrom]),
    [
      ['3s', stageInit(cog, plan.jobDir).initStateDir, cog],
      ['9s', null, null],
      ['18s', null, null],
      ['30s', null, null],
      ['63s', null, null],
    ],
  );
});

test('prepareInit converts CogVideoX weights once, keeps the conversion after, and skips it when the stage has a checkpoint', async () => {
  const dir = tmpDir('prepare-init');
  const job = path.join(dir, 'runs', 'j');
  const cog = path.join(dir, 'cogvideox');
  writeSyntheticDiffusers(cog, TINY, { seed: 4 });
  const opts = { ssmLayer: 'ttt_mlp' as const, seed: 0 };
  const at = { jobDir: job, stage: '3s' };

  const fresh = await prepareInit(stageInit('', job), at, opts);
  assert.deepEqual(fresh, { initFrom: null, conversion: null });

  const first = await prepareInit(stageInit(cog, job), at, opts);
  assert.equal(first.initFrom, convertedInitDir(job));
  assert.equal(first.conversion?.reused, false);
  assert.ok(fs.existsSync(path.join(convertedInitDir(job), 'convert.json')));
  const again = await prepareInit(stageInit(cog, job), at, opts);
  assert.equal(again.conversion?.reused, true, 'the earlier conversion is kept');

  fs.rmSync(convertedInitDir(job), { recursive: true });
  const ckDir = checkpointsDir(stageDir(job, '3s'));
  const state = { step: 2, stage: '3s', totalSteps: 4, samplesSeen: 2, seed: 0, firstLoss: 1, lastLoss: 1 };
  const model = new Map([['dit.a.weight', { shape: [1], data: Float32Array.from([1]) }]]);
  saveCheckpoint(ckDir, { model, state: { ...state, initHash: 'x', configHash: 'y' } });
  assert.ok(latestCompleteCheckpoint(ckDir));
  const resumed = await prepareInit(stageInit(cog, job), at, opts);
  assert.deepEqual(resumed, { initFrom: convertedInitDir(job), conversion: null }, 'a stage with a checkpoint resumes');
  assert.ok(!fs.existsSync(convertedInitDir(job)), 'and converts nothing');
});
