/**
 * Reliability of a stage's writer (issue 5/6): fencing of a zombie by a newer writer (two live
 * processes), rollback on a non-finite loss, fallback from a corrupted checkpoint (logged), and
 * a full disk (a real tmpfs).
 */
import assert from 'node:assert/strict';
import { execFileSync, spawn, type ChildProcessWithoutNullStreams } from 'node:child_process';
import * as fs from 'node:fs';
import * as path from 'node:path';
import * as readline from 'node:readline';
import { test } from 'node:test';
import { Lease, FencedError } from '../../src/checkpoint/lease';
import { listCheckpoints, loadCheckpoint, verifyCheckpoint } from '../../src/checkpoint/store';
import { loadStageConfig } from '../../src/config/load';
import { readNpy, writeNpy } from '../../src/io/npy';
import { writeSynthDataset } from '../../src/data/synthfiles';
import { UserError } from '../../src/errors';
import { modelDims } from '../../src/config/dims';
import { decode, type ChildMessage } from '../../src/train/protocol';
import { isValidationLine } from '../../src/train/metrics';
import { DiskFullError, runShard } from '../../src/train/shard';
import { ROOT, tmpDir, waitFor } from '../helpers';

/** Shards bounded by steps only: shard.max_seconds would end one early on a slow machine. */
const UNBOUNDED = Number.POSITIVE_INFINITY;

const CFG3 = path.join(ROOT, 'configs/train/tiny/3s.toml');
const CFG9 = path.join(ROOT, 'configs/train/tiny/9s.toml');
const CHILD = path.join(ROOT, 'dist/src/train/child.js');

interface Child {
  proc: ChildProcessWithoutNullStreams;
  messages: ChildMessage[];
  stderr: () => string;
  exit: Promise<number | null>;
}

function startChild(req: object, env: NodeJS.ProcessEnv = {}): Child {
  const proc = spawn(process.execPath, [CHILD, JSON.stringify(req)], {
    env: { ...process.env, TTT_LOG_PRETTY: '0', ...env },
    stdio: ['pipe', 'pipe', 'pipe'],
  });
  const messages: ChildMessage[] = [];
  readline.createInterface({ input: proc.stdout }).on('line', (l) => {
    const m = decode(l);
    if (m) messages.push(m);
  });
  let err = '';
  proc.stderr.on('data', (b: Buffer) => (err += b.toString()));
  const exit = new Promise<number | null>((resolve) => proc.once('exit', (code) => resolve(code)));
  return { proc, messages, stderr: () => err, exit };
}

const lastStep = (c: Child): number =>
  Math.max(0, ...c.messages.flatMap((m) => (m.ttt === 'progress' ? [m.step] : [])));

test('leases: each writer gets the next epoch; an older holder is fenced with a clear error', () => {
  const dir = tmpDir('lease');
  const a = Lease.acquire(dir, 'first');
  a.check('anything');
  const b = Lease.acquire(dir, 'second');
  assert.equal(b.epoch, a.epoch + 1);
  b.check('anything');
  assert.throws(
    () => a.check('saving the step-8 checkpoint'),
    (e: unknown) =>
      e instanceof FencedError &&
      /lease 1 .* superseded by lease 2 \(second, pid \d+/.test(e.message) &&
      /stops before saving the step-8 checkpoint/.test(e.message),
  );
});

test('fencing: a zombie writer (still alive) never writes after a newer writer takes the stage', async () => {
  const jobDir = tmpDir('fence');
  const req = {
    configFile: CFG3,
    overrides: {
      'training.steps': 2000,
      'checkpoint.interval': 2,
      'checkpoint.keep': 1000,
      'training.global_batch_size': 1,
    },
    jobDir,
    initFrom: null,
  };
  // The zombie: a live training child whose parent (this test) keeps its stdin open.
  const zombie = startChild({ ...req, who: 'zombie' });
  await waitFor('the first writer to pass step 4', () => lastStep(zombie) >= 4, 120_000, 50);
  const newer = startChild({ ...req, who: 'newer' });
  const code = await Promise.race([zombie.exit, newer.exit.then(() => 'newer ended first')]);
  assert.equal(code, 1, 'the zombie stopped with an error');
  const err = zombie.messages.find((m) => m.ttt === 'error');
  assert.ok(
    err && err.ttt === 'error' && err.kind === 'FencedError' && /superseded by lease 2 \(newer/.test(err.message),
    JSON.stringify(err),
  );
  await waitFor(
    'the newer writer to train 5 steps',
    () => newer.messages.filter((m) => m.ttt === 'progress').length >= 5,
    120_000,
    50,
  );
  newer.proc.stdin.write('stop\n');
  assert.equal(await newer.exit, 0);
  const taken = JSON.parse(fs.readFileSync(path.join(jobDir, '3s', 'leases', '00000002.json'), 'utf8')) as {
    at: string;
  };
  const cks = listCheckpoints(path.join(jobDir, '3s', 'checkpoints')).map((c) => loadCheckpoint(c.dir).state);
  const afterTakeover = cks.filter((s) => s.createdAt > taken.at);
  assert.ok(afterTakeover.length >= 2, 'the newer writer saved checkpoints');
  assert.deepEqual(
    [...new Set(afterTakeover.map((s) => s.lease))],
    [2],
    "every checkpoint saved after the takeover is the newer writer's",
  );
  const result = newer.messages.find((m) => m.ttt === 'result');
  assert.ok(result && result.ttt === 'result');
  assert.ok(
    cks.filter((s) => s.lease === 1).every((s) => s.step <= result.result.startStep),
    'the zombie saved nothing beyond where the newer writer resumed',
  );
});

test('a non-finite loss rolls back to the last good checkpoint and skips the batch; too many fail naming steps and samples', async () => {
  const dir = tmpDir('nan');
  const st = loadStageConfig(CFG9, {});
  writeSynthDataset(dir, st.config, modelDims(st.config), 4);
  const poisoned = path.join(dir, 'latents/9sec-1.npy');
  const npy = readNpy(poisoned);
  npy.data[0] = Number.NaN;
  writeNpy(poisoned, npy);
  // 4 samples, one per step: sample 1 comes up once in each of the two epochs of 8 steps.
  const overrides = {
    'training.dataset_path': dir,
    'training.jsonl_paths': ['9sec.jsonl'],
    'training.steps': 8,
    'checkpoint.interval': 2,
    'checkpoint.keep': 100,
    'training.global_batch_size': 1,
  };
  const ok = await runShard({
    configFile: CFG9,
    overrides: { ...overrides, 'training.max_nonfinite_losses': 2 },
    jobDir: path.join(dir, 'ok'),
    initFrom: null,
    maxSeconds: UNBOUNDED,
  });
  assert.equal(ok.step, 8);
  assert.ok(Number.isFinite(ok.lastLoss));
  const final = loadCheckpoint(path.join(dir, 'ok', '9s', 'checkpoints', 'step-00000008')).state;
  assert.equal(final.nonFinite?.length, 2);
  assert.deepEqual(
    final.nonFinite!.map((e) => e.samples),
    [[1], [1]],
  );
  assert.deepEqual(
    final.skippedBatches,
    final.nonFinite!.map((e) => e.dataStep),
  );
  assert.equal(final.samplesSeen, 10, '8 steps trained and 2 batches skipped');
  const metrics = fs
    .readFileSync(path.join(dir, 'ok', '9s', 'metrics.jsonl'), 'utf8')
    .trim()
    .split('\n')
    .map((l) => JSON.parse(l) as { step: number; loss: number })
    .filter((l) => !isValidationLine(l));
  assert.ok(
    metrics.every((m) => typeof m.loss === 'number' && Number.isFinite(m.loss)),
    'no non-finite loss was recorded or applied',
  );
  // The weights are finite: the bad step was never applied.
  const model = loadCheckpoint(path.join(dir, 'ok', '9s', 'checkpoints', 'step-00000008')).model;
  for (const [name, t] of model) assert.ok(t.data.every(Number.isFinite), `${name} is finite`);
  // Each rollback re-runs the steps after the last checkpoint (interval 2): when an event is at an
  // even step, the odd step before it is trained once more per event.
  const e = final.nonFinite![0]!.step;
  const events = final.nonFinite!.filter((x) => x.step === e).length;
  if (e % 2 === 0)
    assert.equal(
      metrics.filter((m) => m.step === e - 1).length,
      1 + events,
      'rolled back to the checkpoint before the event',
    );
  await assert.rejects(
    runShard({
      configFile: CFG9,
      overrides: { ...overrides, 'training.max_nonfinite_losses': 1 },
      jobDir: path.join(dir, 'fail'),
      initFrom: null,
      maxSeconds: UNBOUNDED,
    }),
    (e: unknown) =>
      e instanceof UserError &&
      e.kind === 'NonFiniteLoss' &&
      /2 times in stage 9s, more than training\.max_nonfinite_losses = 1/.test(e.message) &&
      /step \d+ \(loss NaN, grad norm NaN, samples 1\); step \d+ \(loss NaN/.test(e.message),
  );
});

test('a corrupted newest checkpoint is detected by its checksum; resume falls back to the previous one and logs why', async () => {
  const jobDir = tmpDir('corrupt');
  const overrides = { 'training.steps': 12, 'checkpoint.interval': 4, 'training.global_batch_size': 1 };
  await runShard({ configFile: CFG3, overrides, jobDir, initFrom: null, maxSeconds: UNBOUNDED, maxSteps: 8 });
  const ck = path.join(jobDir, '3s', 'checkpoints');
  const f = path.join(ck, 'step-00000008', 'model.safetensors');
  const bytes = fs.readFileSync(f);
  bytes[bytes.length - 5]! ^= 0x01; // one flipped bit, same size
  fs.writeFileSync(f, bytes);
  const truncated = path.join(ck, 'step-00000004', 'optimizer.safetensors');
  assert.equal(verifyCheckpoint(path.join(ck, 'step-00000008')).ok, false);
  const child = startChild({ configFile: CFG3, overrides, jobDir, initFrom: null }, { TTT_LOG_LEVEL: 'info' });
  assert.equal(await child.exit, 0);
  const result = child.messages.find((m) => m.ttt === 'result');
  assert.ok(result && result.ttt === 'result');
  assert.equal(result.result.startStep, 4, 'resumed from the previous valid checkpoint');
  assert.equal(result.result.step, 12);
  const warning = child
    .stderr()
    .split('\n')
    .find((l) => l.includes('skipping unusable checkpoint'));
  assert.ok(warning, child.stderr().slice(-2000));
  assert.match(warning, /step-00000008/);
  assert.match(warning, /model\.safetensors fails its sha256 checksum \(corrupted\)/);
  // A truncated file is caught the same way (by its size) before any checksum.
  fs.truncateSync(truncated, 100);
  assert.match(
    (verifyCheckpoint(path.join(ck, 'step-00000004')) as { reason: string }).reason,
    /optimizer\.safetensors has 100 bytes, .* \(truncated\?\)/,
  );
});

function mountTmpfs(dir: string, size: string): boolean {
  try {
    execFileSync('mount', ['-t', 'tmpfs', '-o', `size=${size}`, 'tmpfs', dir], { stdio: 'ignore' });
    return true;
  } catch {
    return false;
  }
}

/** Fills the filesystem of `dir` with a ballast file until it has no space left. */
function fill(file: string): void {
  const fd = fs.openSync(file, 'w');
  const chunk = Buffer.alloc(64 * 1024);
  try {
    for (;;) fs.writeSync(fd, chunk);
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code !== 'ENOSPC') throw e;
  } finally {
    fs.closeSync(fd);
  }
}

test('a full disk during a save: the previous checkpoint stays intact, the shard fails clearly, and continues once there is space', async (t) => {
  const mnt = tmpDir('diskfull');
  if (!mountTmpfs(mnt, '16m')) return t.skip('mounting a tmpfs needs root (CAP_SYS_ADMIN)');
  try {
    const jobDir = path.join(mnt, 'job');
    const overrides = { 'training.steps': 8, 'checkpoint.interval': 4, 'training.global_batch_size': 1 };
    await runShard({ configFile: CFG3, overrides, jobDir, initFrom: null, maxSeconds: UNBOUNDED, maxSteps: 4 });
    const ck = path.join(jobDir, '3s', 'checkpoints');
    assert.deepEqual(
      listCheckpoints(ck).map((c) => c.step),
      [4, 0],
    );
    // Leave just enough room for the metrics lines, not for a checkpoint (about 0.9 MB).
    fill(path.join(mnt, 'ballast'));
    fs.truncateSync(path.join(mnt, 'ballast'), fs.statSync(path.join(mnt, 'ballast')).size - 64 * 1024);
    await assert.rejects(
      runShard({ configFile: CFG3, overrides, jobDir, initFrom: null, maxSeconds: UNBOUNDED }),
      (e: unknown) =>
        e instanceof DiskFullError &&
        /^disk full: ENOSPC: no space left on device/.test(e.message) &&
        /MB free under /.test(e.message) &&
        /previous ones are intact/.test(e.message),
    );
    assert.deepEqual(
      listCheckpoints(ck).map((c) => c.step),
      [4, 0],
    );
    assert.equal(verifyCheckpoint(path.join(ck, 'step-00000004')).ok, true, 'the previous checkpoint is intact');
    assert.deepEqual(
      fs.readdirSync(ck).filter((n) => n.startsWith('.tmp-')),
      [],
      'the failed save left nothing behind',
    );
    fs.rmSync(path.join(mnt, 'ballast'));
    const r = await runShard({ configFile: CFG3, overrides, jobDir, initFrom: null, maxSeconds: UNBOUNDED });
    assert.equal(r.startStep, 4);
    assert.equal(r.step, 8);
  } finally {
    execFileSync('umount', [mnt]);
  }
});
