import assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { test } from 'node:test';
import { loadCurriculum, loadStageConfig, parseCliOverrides, resolveUntil } from '../../src/config/load';
import { ConfigError } from '../../src/errors';
import { ROOT, tmpDir } from '../helpers';

const TINY_3S = path.join(ROOT, 'configs/train/tiny/3s.toml');
const PAPER = path.join(ROOT, 'configs/curriculum/ttt-mlp.toml');

function problems(fn: () => unknown): ConfigError {
  try {
    fn();
  } catch (e) {
    assert.ok(e instanceof ConfigError, `expected ConfigError, got ${String(e)}`);
    return e;
  }
  assert.fail('expected a ConfigError');
}

test('the shipped paper configs carry the paper values', () => {
  const one = { 'parallelism.dp_replicate': 1, 'parallelism.dp_sharding': 1, 'parallelism.tp_sharding': 1 };
  const cur = loadCurriculum(PAPER, one, { checkPaths: false });
  assert.deepEqual(
    cur.stages.map((s) => s.video.stage),
    ['3s', '9s', '18s', '30s', '63s'],
  );
  assert.deepEqual(
    cur.stages.map((s) => s.config.training.steps),
    [5000, 5000, 1000, 1000, 250],
  );
  assert.deepEqual(
    cur.stages.map((s) => s.config.optimizer.lr),
    [1e-5, 1e-5, 1e-5, 1e-5, 1e-5],
  );
  assert.deepEqual(
    cur.stages.map((s) => s.config.optimizer.lr_ssm),
    [1e-4, 1e-5, 1e-5, 1e-5, 1e-5],
  );
  assert.deepEqual(
    cur.stages.map((s) => s.config.model.mini_batch_size),
    [64, 64, 64, 64, 64],
  );
  assert.deepEqual(
    cur.stages.map((s) => s.config.checkpoint.interval),
    [500, 500, 500, 25, 25],
  );
  assert.deepEqual(
    cur.stages.map((s) => s.config.model.adapter_method),
    ['sft', 'qkvo', 'qkvo', 'qkvo', 'qkvo'],
  );
  // The mesh as shipped (before the overrides above): 8x8x1, 8x8x1, 8x8x1, 16x4x2, 16x4x4.
  const meshes = ['3s', '9s', '18s', '30s', '63s'].map((s) => {
    const e = problems(() =>
      loadStageConfig(path.join(ROOT, `configs/train/ttt-mlp/${s}.toml`), {}, { checkPaths: false }),
    );
    return e.problems[0]!.value;
  });
  assert.deepEqual(meshes, ['8*8*1 = 64', '8*8*1 = 64', '8*8*1 = 64', '16*4*2 = 128', '16*4*4 = 256']);
});

test('the paper configs validate on a 64/128/256-device mesh', () => {
  for (const [s, n] of [
    ['3s', 64],
    ['30s', 128],
    ['63s', 256],
  ] as const) {
    const st = loadStageConfig(
      path.join(ROOT, `configs/train/ttt-mlp/${s}.toml`),
      {},
      { checkPaths: false, devices: n },
    );
    assert.equal(st.video.stage, s);
  }
});

test('an unknown field names the file, the field and the fix', () => {
  const e = problems(() => loadStageConfig(TINY_3S, { 'training.bogus': 1 }));
  assert.equal(e.problems.length, 1);
  assert.equal(e.problems[0]!.field, 'training.bogus');
  assert.match(e.message, /3s\.toml: training\.bogus = 1: unknown field\. Fix: remove it/);
});

test('a field that TTT-Video-DiT keeps elsewhere says where it lives here', () => {
  const dir = tmpDir('cfg');
  const f = path.join(dir, 'moved.toml');
  fs.writeFileSync(f, fs.readFileSync(TINY_3S, 'utf8').replace('[training]', '[training]\nadapter_method = "sft"'));
  const e = problems(() => loadStageConfig(f));
  assert.match(
    e.message,
    /training\.adapter_method = "sft": this field lives in another section here\. Fix: move it to model\.adapter_method/,
  );
});

test('a wrong type names the field, the value and the expected type', () => {
  const e = problems(() => loadStageConfig(TINY_3S, { 'training.steps': 'many' }, { overrideSource: 'input.set' }));
  assert.equal(e.problems[0]!.file, 'input.set');
  assert.equal(e.problems[0]!.field, 'training.steps');
  assert.equal(e.problems[0]!.value, 'many');
  assert.match(e.message, /expected number/);
});

test('string overrides are read as TOML values, and strings stay strings where strings are expected', () => {
  const st = loadStageConfig(TINY_3S, {
    'training.steps': '7',
    'optimizer.lr': '2e-4',
    'job.exp_name': '123',
    'remat.mlp': 'true',
  });
  assert.equal(st.config.training.steps, 7);
  assert.equal(st.config.optimizer.lr, 2e-4);
  assert.equal(st.config.job.exp_name, '123');
  assert.equal(st.config.remat.mlp, true);
});

test('a mesh whose product differs from the devices says which product would work', () => {
  const e = problems(() => loadStageConfig(TINY_3S, { 'parallelism.dp_replicate': 2 }));
  const p = e.problems[0]!;
  assert.equal(p.field, 'parallelism.dp_replicate*dp_sharding*tp_sharding');
  assert.match(p.message, /2 devices but 1 is available/);
  assert.match(p.fix, /product is 1/);
});

test('a sequence length that breaks the mini-batch rule names the text lengths that fit', () => {
  const e = problems(() => loadStageConfig(path.join(ROOT, 'configs/train/tiny/9s.toml'), { 'model.text_length': 35 }));
  const p = e.problems[0]!;
  assert.equal(p.field, 'model.text_length');
  assert.equal(p.value, 35);
  assert.match(p.message, /3 segments x 35 text \+ 37 frames x 4 patches = 253 tokens, not a multiple of .* 64/);
  // 3*36 + 148 = 256 = 4 x 64
  assert.match(p.fix, /model\.text_length = 36 \(256 tokens = 4 x 64\)/);
});

test('a missing dataset names training.dataset_path', () => {
  const e = problems(() => loadStageConfig(TINY_3S, { 'training.dataset_path': '/nonexistent/data' }));
  assert.equal(e.problems[0]!.field, 'training.dataset_path');
  assert.match(e.message, /no such directory/);
});

test('invalid TOML reports the line', () => {
  const dir = tmpDir('cfg');
  const f = path.join(dir, 'bad.toml');
  fs.writeFileSync(f, '[job]\nexp_name = \n');
  const e = problems(() => loadStageConfig(f));
  assert.match(e.message, /bad\.toml: \(file\): not valid TOML: line 2/);
});

test('command-line overrides parse --section.field=value and --section.field value', () => {
  const { overrides, rest } = parseCliOverrides([
    'train',
    'x.toml',
    '--training.steps=5',
    '--optimizer.lr',
    '1e-3',
    '--max-steps',
    '2',
  ]);
  assert.deepEqual(overrides, { 'training.steps': '5', 'optimizer.lr': '1e-3' });
  assert.deepEqual(rest, ['train', 'x.toml', '--max-steps', '2']);
});

test('until accepts 18s and 18sec and rejects other stages', () => {
  const cur = loadCurriculum(path.join(ROOT, 'configs/curriculum/tiny.toml'));
  assert.equal(resolveUntil('18sec', cur.stages), '18s');
  assert.equal(resolveUntil(undefined, cur.stages), '63s');
  assert.throws(() => resolveUntil('12s', cur.stages), /not a stage of this curriculum.*3s, 9s, 18s, 30s, 63s/);
});

test('a curriculum whose stages do not grow is rejected', () => {
  const dir = tmpDir('cur');
  const f = path.join(dir, 'c.toml');
  fs.writeFileSync(f, `name = "x"\nstages = ["${path.join(ROOT, 'configs/train/tiny/9s.toml')}", "${TINY_3S}"]\n`);
  const e = problems(() => loadCurriculum(f));
  assert.match(e.message, /stage 2 is not longer than stage 1/);
});
