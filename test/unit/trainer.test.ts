import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { test } from 'node:test';
import { listCheckpoints, loadCheckpoint } from '../../src/checkpoint/store';
import { runShard } from '../../src/train/shard';
import { ROOT, tmpDir } from '../helpers';

/** Shards bounded by steps only: shard.max_seconds would end one early on a slow machine. */
const UNBOUNDED = Number.POSITIVE_INFINITY;

const CFG = path.join(ROOT, 'configs/train/tiny/3s.toml');
const CHILD = path.join(ROOT, 'dist/src/train/child.js');
const CRASHING = path.join(ROOT, 'dist/test/fixtures/crash-before-rename.js');

test('a shard trains, checkpoints every interval and at its end, and the next shard resumes', async () => {
  const jobDir = tmpDir('shard');
  const overrides = { 'training.steps': 12, 'checkpoint.interval': 4, 'training.global_batch_size': 1 };
  const a = await runShard({ configFile: CFG, overrides, jobDir, initFrom: null, maxSeconds: UNBOUNDED, maxSteps: 6 });
  assert.equal(a.step, 6);
  assert.equal(a.done, false);
  assert.equal(a.reason, 'steps');
  const ck = path.join(jobDir, '3s', 'checkpoints');
  assert.deepEqual(
    listCheckpoints(ck).map((c) => c.step),
    [6, 4, 0],
  );
  const b = await runShard({ configFile: CFG, overrides, jobDir, initFrom: null, maxSeconds: UNBOUNDED });
  assert.equal(b.startStep, 6);
  assert.equal(b.step, 12);
  assert.equal(b.done, true);
  assert.equal(b.firstLoss, a.firstLoss, 'the first loss of the stage survives the resume');
  assert.deepEqual(
    listCheckpoints(ck).map((c) => c.step),
    [12, 8, 6],
  );
  const final = loadCheckpoint(path.join(ck, 'step-00000012'));
  assert.equal(final.state.step, 12);
  assert.ok(final.optimizer && final.optimizer.size > 0);
});

test('a crash during a save leaves no usable-looking checkpoint, and resume uses the previous one', async () => {
  const jobDir = tmpDir('crash-save');
  const overrides = { 'training.steps': 8, 'checkpoint.interval': 4, 'training.global_batch_size': 1 };
  const first = await runShard({
    configFile: CFG,
    overrides,
    jobDir,
    initFrom: null,
    maxSeconds: UNBOUNDED,
    maxSteps: 4,
  });
  assert.equal(first.step, 4);
  // A training process that SIGKILLs itself after writing the files of step 8 and before the rename.
  const child = spawn(
    process.execPath,
    [CRASHING, JSON.stringify({ configFile: CFG, overrides, jobDir, initFrom: null })],
    { env: { ...process.env, TTT_LOG_LEVEL: 'warn' }, stdio: ['pipe', 'ignore', 'ignore'] },
  );
  const signal = await new Promise<string | null>((resolve) => child.once('exit', (_c, sig) => resolve(sig)));
  child.stdin.destroy();
  assert.equal(signal, 'SIGKILL');
  const ckDir = path.join(jobDir, '3s', 'checkpoints');
  const leftovers = fs.readdirSync(ckDir).filter((n) => n.startsWith('.tmp-step-00000008'));
  assert.equal(leftovers.length, 1, 'the torn save left its temporary folder');
  assert.deepEqual(
    listCheckpoints(ckDir).map((c) => c.step),
    [4, 0],
  );
  const resumed = await runShard({ configFile: CFG, overrides, jobDir, initFrom: null, maxSeconds: UNBOUNDED });
  assert.equal(resumed.startStep, 4);
  assert.equal(resumed.step, 8);
  assert.equal(
    fs.readdirSync(ckDir).filter((n) => n.startsWith('.tmp-')).length,
    0,
    "the dead writer's temporary folder was cleaned up",
  );
});

test('a training child exits when its parent goes away (stdin closes)', async () => {
  const jobDir = tmpDir('orphan');
  const child = spawn(
    process.execPath,
    [CHILD, JSON.stringify({ configFile: CFG, overrides: { 'training.steps': 1000 }, jobDir, initFrom: null })],
    {
      stdio: ['pipe', 'pipe', 'ignore'],
      env: { ...process.env, TTT_LOG_LEVEL: 'warn' },
    },
  );
  // Wait for the first progress line, then close stdin as a dying parent would.
  await new Promise<void>((resolve) =>
    child.stdout.on('data', (b: Buffer) => b.toString().includes('"progress"') && resolve()),
  );
  let progress = 0;
  child.stdout.on('data', (b: Buffer) => (progress += b.toString().split('"progress"').length - 1));
  child.stdin.end();
  const code = await new Promise<number | null>((resolve) => child.once('exit', (c) => resolve(c)));
  // 70 is the child's "my parent is gone" exit (child.ts); finishing the shard would exit 0 after 1000 steps.
  assert.equal(code, 70, 'the child exited because its stdin closed');
  assert.ok(progress < 1000, `it stopped early: ${progress} more steps reported after stdin closed`);
});
