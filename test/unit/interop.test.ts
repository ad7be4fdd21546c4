/**
 * PyTorch interop, checked with Python's safetensors + numpy (what a PyTorch user's script
 * loads and saves with, minus torch): our checkpoints and converted weights load there with
 * identical values, and a TTT-Video-DiT state dict written by Python loads here as
 * checkpoint.init_state_dir, bit for bit. The CogVideoX weights are saved by the real diffusers
 * library (fixtures.ts: diffusersFixture), and the names they should get are those of
 * TTT-Video-DiT's own converter, so neither side of a check comes from our key map.
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
import { modelDims } from '../../src/config/dims';
import { initialValue, paramSpecs } from '../../src/model/params';
import { CLI, ROOT, runPython, tmpDir } from '../helpers';
import { assertConvertedFromDiffusers, diffusersFixture } from './fixtures';

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
  // Converted CogVideoX weights (a transformer saved by diffusers), sharded: Python follows the
  // index; the tensors TTT-Video-DiT's converter names have torch's values, the rest our initialisation.
  const from = path.join(dir, 'cogvideox');
  const fx = diffusersFixture(from);
  const out = path.join(dir, 'converted');
  const r = await convertDiffusers({ from, out, seed: 2, maxPartBytes: 50_000 });
  assert.ok(r.weightFiles.length > 1);
  const dump = runPython<Dump>('dump_safetensors.py', [out]);
  const fromTorch = assertConvertedFromDiffusers(
    fx,
    (n) => dump.tensors[n] && { shape: dump.tensors[n].shape, sha256: dump.tensors[n].sha256 },
    'converted weights in Python',
  );
  assert.equal(fromTorch, 64);
  const taken = new Set(Object.values(fx.tensors).map((t) => t.ttt_name));
  const added = new Map(
    specs.filter((s) => !taken.has(s.name)).map((s) => [s.name, { shape: s.torchShape, data: initialValue(s, 2) }]),
  );
  assert.equal(added.size, 44);
  assertSame(
    { ...dump, tensors: Object.fromEntries(Object.entries(dump.tensors).filter(([n]) => added.has(n))) },
    added,
    'added parameters',
  );
  assert.equal(Object.keys(dump.tensors).length, specs.length, 'nothing else');
});

test('a TTT-Video-DiT state dict written by Python loads here as checkpoint.init_state_dir, bit for bit', () => {
  const dir = tmpDir('interop-in');
  // Names and shapes: TTT-Video-DiT's converter's names for the diffusers model's tensors, with
  // torch's shapes; only the parameters TTT-Video-DiT adds (the TTT layer and its gates, which
  // no Python library here can build) come from our own specs.
  const fx = diffusersFixture(path.join(dir, 'cogvideox'));
  const fromDiffusers = Object.values(fx.tensors).map((t) => ({ name: t.ttt_name!, shape: t.shape }));
  const taken = new Set(fromDiffusers.map((t) => t.name));
  const specFile = path.join(dir, 'specs.json');
  fs.writeFileSync(
    specFile,
    JSON.stringify([
      ...fromDiffusers,
      ...specs.filter((s) => !taken.has(s.name)).map((s) => ({ name: s.name, shape: s.torchShape })),
    ]),
  );
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
