/**
 * PyTorch interop, checked with Python's safetensors + numpy (what a PyTorch user's script
 * loads and saves with, minus torch): our checkpoints and converted weights load there with
 * identical values, and a TTT-Video-DiT state dict written by Python loads here as
 * checkpoint.init_state_dir, bit for bit.
 */
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import * as crypto from 'node:crypto';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { test } from 'node:test';
import { readSafetensors, type FloatTensor } from '../../src/io/safetensors';
import { saveCheckpoint, tensorsHash, verifyCheckpoint } from '../../src/checkpoint/store';
import { loadStageConfig } from '../../src/config/load';
import { convertDiffusers } from '../../src/convert/convert';
import { diffusersName } from '../../src/convert/keymap';
import { writeSyntheticDiffusers } from '../../src/convert/synth';
import { modelDims } from '../../src/config/dims';
import { initialValue, paramSpecs } from '../../src/model/params';
import { CLI, ROOT, runPython, tmpDir } from '../helpers';
import { TINY } from './fixtures';

interface Dump {
  tensors: Record<string, { dtype: string; shape: number[]; sha256: string }>;
  metadata: Record<string, Record<string, string> | null>;
}

const CFG = path.join(ROOT, 'configs/train/tiny/3s.toml');
const stage = loadStageConfig(CFG);
const specs = paramSpecs(modelDims(stage.config));
const sha = (t: FloatTensor): string =>
  crypto
    .createHash('sha256')
    .update(Buffer.from(t.data.buffer, t.data.byteOffset, t.data.byteLength))
    .digest('hex');

function assertSame(dump: Dump, expected: Map<string, FloatTensor>, what: string): void {
  assert.deepEqual(Object.keys(dump.tensors).sort(), [...expected.keys()].sort(), `${what}: the same tensor names`);
  for (const [name, t] of expected) {
    const d = dump.tensors[name]!;
    assert.equal(d.dtype, 'float32', `${what}: ${name} dtype`);
    assert.deepEqual(d.shape, t.shape, `${what}: ${name} shape`);
    assert.equal(d.sha256, sha(t), `${what}: ${name} has identical values in Python`);
  }
}

test('our checkpoints and converted weights load in Python safetensors + numpy with identical values', async () => {
  const dir = tmpDir('interop-out');
  // A training checkpoint (model + optimizer).
  const model = new Map(specs.map((s) => [s.name, { shape: s.torchShape, data: initialValue(s, 4) }]));
  const optimizer = new Map(
    [...model].flatMap(([n, t]) => [
      [`${n}.exp_avg`, { shape: t.shape, data: t.data.map((x) => x * 0.5) }] as const,
      [`${n}.exp_avg_sq`, { shape: t.shape, data: t.data.map((x) => x * x) }] as const,
    ]),
  );
  const ck = saveCheckpoint(path.join(dir, 'checkpoints'), {
    model,
    optimizer,
    state: {
      step: 0,
      stage: '3s',
      totalSteps: 1,
      samplesSeen: 0,
      seed: 4,
      firstLoss: null,
      lastLoss: null,
      initHash: null,
      configHash: 'x',
    },
  });
  const m = runPython<Dump>('dump_safetensors.py', [path.join(ck, 'model.safetensors')]);
  assertSame(m, model, 'model.safetensors');
  assert.deepEqual(m.metadata['model.safetensors'], { format: 'pt' });
  assertSame(
    runPython<Dump>('dump_safetensors.py', [path.join(ck, 'optimizer.safetensors')]),
    optimizer,
    'optimizer.safetensors',
  );
  // Converted CogVideoX weights, sharded: Python follows the index; values = the BF16 source (exact in F32) and the added initialisation.
  const from = path.join(dir, 'cogvideox');
  writeSyntheticDiffusers(from, TINY, { dtype: 'BF16', shards: 2, seed: 8 });
  const out = path.join(dir, 'converted');
  const r = await convertDiffusers({ from, out, seed: 2, maxPartBytes: 50_000 });
  assert.ok(r.weightFiles.length > 1);
  const src = new Map<string, FloatTensor>();
  for (const f of fs.readdirSync(from).filter((f) => f.endsWith('.safetensors')))
    for (const [k, v] of readSafetensors(path.join(from, f)).tensors) src.set(k, v);
  const expected = new Map(
    specs.map((s) => [
      s.name,
      diffusersName(s.name) ? src.get(diffusersName(s.name)!)! : { shape: s.torchShape, data: initialValue(s, 2) },
    ]),
  );
  assertSame(runPython<Dump>('dump_safetensors.py', [out]), expected, 'converted weights');
});

test('a TTT-Video-DiT state dict written by Python loads here as checkpoint.init_state_dir, bit for bit', () => {
  const dir = tmpDir('interop-in');
  const specFile = path.join(dir, 'specs.json');
  fs.writeFileSync(specFile, JSON.stringify(specs.map((s) => ({ name: s.name, shape: s.torchShape }))));
  for (const shards of [1, 3]) {
    const init = path.join(dir, `python-${shards}`);
    const written = runPython<Record<string, string>>('write_state_dict.py', [specFile, init, String(shards), '42']);
    assert.equal(Object.keys(written).length, specs.length);
    const runs = path.join(dir, `runs-${shards}`);
    const r = spawnSync(
      process.execPath,
      [
        CLI,
        'train',
        CFG,
        `--checkpoint.init_state_dir=${init}`,
        `--job.dump_folder=${runs}`,
        '--job.exp_name=from-python',
        '--max-steps',
        '1',
      ],
      {
        cwd: ROOT,
        encoding: 'utf8',
        env: { ...process.env, TTT_LOG_LEVEL: 'warn' },
      },
    );
    assert.equal(r.status, 0, r.stderr);
    // The stage's step-0 checkpoint holds its init weights: Python's values, unchanged.
    const step0 = path.join(runs, 'from-python', '3s', 'checkpoints', 'step-00000000');
    const dump = runPython<Dump>('dump_safetensors.py', [path.join(step0, 'model.safetensors')]);
    assert.deepEqual(Object.keys(dump.tensors).sort(), Object.keys(written).sort());
    for (const [name, h] of Object.entries(written))
      assert.equal(dump.tensors[name]!.sha256, h, `${shards} shard(s): ${name} loaded bit for bit`);
    const v = verifyCheckpoint(step0);
    assert.ok(v.ok);
    const fromPython = new Map<string, FloatTensor>();
    for (const f of fs.readdirSync(init).filter((f) => f.endsWith('.safetensors')))
      for (const [k, t] of readSafetensors(path.join(init, f)).tensors) fromPython.set(k, t);
    assert.equal(
      v.state.initHash,
      tensorsHash(fromPython),
      'the stage records the hash of the Python weights as its init',
    );
    assert.ok(
      fs.existsSync(path.join(runs, 'from-python', '3s', 'checkpoints', 'step-00000001')),
      'and trained from them',
    );
  }
});
