import assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { test } from 'node:test';
import { encodeSafetensors, readSafetensors, SafetensorsError, type FloatTensor } from '../../src/io/safetensors';
import {
  latestCompleteCheckpoint,
  listCheckpoints,
  loadCheckpoint,
  pruneCheckpoints,
  saveCheckpoint,
  verifyCheckpoint,
} from '../../src/checkpoint/store';
import { tmpDir } from '../helpers';

function tensors(seed: number): Map<string, FloatTensor> {
  return new Map([
    ['dit.a.weight', { shape: [2, 3], data: Float32Array.from([1, 2, 3, 4, 5, seed]) }],
    ['dit.b.bias', { shape: [3], data: Float32Array.from([0.5, -0.25, seed / 7]) }],
  ]);
}

function state(step: number) {
  return {
    step,
    stage: '3s',
    totalSteps: 40,
    samplesSeen: step,
    seed: 0,
    firstLoss: 1,
    lastLoss: 0.5,
    initHash: 'x',
    configHash: 'y',
  };
}

test('safetensors round-trips float32 tensors exactly and rejects malformed files', () => {
  const dir = tmpDir('st');
  const f = path.join(dir, 'm.safetensors');
  fs.writeFileSync(f, Buffer.concat(encodeSafetensors(tensors(9), { format: 'pt' })));
  const back = readSafetensors(f);
  assert.deepEqual([...back.tensors.keys()].sort(), ['dit.a.weight', 'dit.b.bias']);
  assert.deepEqual(Array.from(back.tensors.get('dit.a.weight')!.data), [1, 2, 3, 4, 5, 9]);
  assert.deepEqual(back.tensors.get('dit.a.weight')!.shape, [2, 3]);
  assert.equal(back.metadata.format, 'pt');
  const bytes = fs.readFileSync(f);
  fs.writeFileSync(f, bytes.subarray(0, bytes.length - 4));
  assert.throws(
    () => readSafetensors(f),
    (e: unknown) => e instanceof SafetensorsError && /fall outside/.test((e as Error).message),
  );
  const huge = Buffer.alloc(16);
  huge.writeBigUInt64LE(BigInt(1000));
  fs.writeFileSync(f, huge);
  assert.throws(() => readSafetensors(f), /runs past the end/);
});

test('a saved checkpoint verifies, loads, and a corrupted one is detected by its checksum', () => {
  const dir = tmpDir('ck');
  const d = saveCheckpoint(dir, { model: tensors(1), optimizer: tensors(2), state: state(10) });
  assert.equal(path.basename(d), 'step-00000010');
  const v = verifyCheckpoint(d);
  assert.ok(v.ok);
  const ck = loadCheckpoint(d);
  assert.equal(ck.state.step, 10);
  assert.deepEqual(Array.from(ck.model.get('dit.a.weight')!.data), [1, 2, 3, 4, 5, 1]);
  assert.deepEqual(Array.from(ck.optimizer!.get('dit.a.weight')!.data), [1, 2, 3, 4, 5, 2]);
  // Flip one byte of the tensor data: same size, wrong checksum.
  const f = path.join(d, 'model.safetensors');
  const b = fs.readFileSync(f);
  b[b.length - 1] ^= 0xff;
  fs.writeFileSync(f, b);
  const bad = verifyCheckpoint(d);
  assert.equal(bad.ok, false);
  assert.match((bad as { reason: string }).reason, /sha256/);
});

test('a torn save is never picked for resume: temporary folders and half-written step folders are skipped', () => {
  const dir = tmpDir('torn');
  saveCheckpoint(dir, { model: tensors(1), state: state(10) });
  // 1. A crash during the save of step 20: the temporary folder stays behind.
  assert.throws(() =>
    saveCheckpoint(
      dir,
      { model: tensors(2), state: state(20) },
      {
        beforeRename: (tmp) => {
          fs.cpSync(tmp, path.join(dir, '.tmp-step-00000020-999999-deadbeef'), { recursive: true });
          throw new Error('simulated crash');
        },
      },
    ),
  );
  // 2. A step folder whose model file was cut short (as by a crash of a non-atomic writer).
  const d30 = saveCheckpoint(dir, { model: tensors(3), state: state(30) });
  const m = path.join(d30, 'model.safetensors');
  fs.truncateSync(m, fs.statSync(m).size - 8);
  // 3. A step folder without state.json.
  const d40 = saveCheckpoint(dir, { model: tensors(4), state: state(40) });
  fs.rmSync(path.join(d40, 'state.json'));
  const skipped: string[] = [];
  const latest = latestCompleteCheckpoint(dir, (d, reason) => skipped.push(`${path.basename(d)}: ${reason}`));
  assert.equal(latest?.state.step, 10);
  assert.deepEqual(
    listCheckpoints(dir).map((c) => c.step),
    [40, 30, 10],
  );
  assert.equal(skipped.length, 2);
  assert.match(skipped[0]!, /step-00000040: state\.json missing/);
  assert.match(skipped[1]!, /step-00000030: model\.safetensors has \d+ bytes, state\.json says \d+ \(truncated\?\)/);
});

test('pruning keeps the newest complete checkpoints and removes temporary folders of dead writers', () => {
  const dir = tmpDir('prune');
  for (const s of [5, 10, 15, 20]) saveCheckpoint(dir, { model: tensors(s), state: state(s) });
  fs.mkdirSync(path.join(dir, '.tmp-step-00000025-999999-deadbeef'));
  const mine = path.join(dir, `.tmp-step-00000030-${process.pid}-cafebabe`);
  fs.mkdirSync(mine);
  pruneCheckpoints(dir, 2);
  assert.deepEqual(
    listCheckpoints(dir).map((c) => c.step),
    [20, 15],
  );
  assert.equal(fs.existsSync(path.join(dir, '.tmp-step-00000025-999999-deadbeef')), false);
  assert.equal(fs.existsSync(mine), true, 'a live writer keeps its temporary folder');
});
