/**
 * The data prefetch thread (src/data/prefetch.ts): the batches it hands over are makeBatch's,
 * bit for bit, in any order of requests (guessed or not, with gradient accumulation); it builds
 * the next micro-batches before they are asked for; bad samples and errors reach the caller
 * when it takes the batch that has them.
 */
import assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { test } from 'node:test';
import { loadStageConfig } from '../../src/config/load';
import { type Batch, disposeBatch, makeBatch, openDataSource, type SkipPolicy } from '../../src/data/batch';
import { openPrefetcher } from '../../src/data/prefetch';
import { writeSynthDataset } from '../../src/data/synthfiles';
import { UserError } from '../../src/errors';
import { initBackend } from '../../src/backend';
import { modelDims } from '../../src/config/dims';
import { ROOT, tmpDir } from '../helpers';

const CFG = path.join(ROOT, 'configs/train/tiny/9s.toml');

function fileDataset(samples: number, extra: Record<string, unknown> = {}) {
  const dir = tmpDir('prefetch');
  const st = loadStageConfig(CFG, {});
  writeSynthDataset(dir, st.config, modelDims(st.config), samples);
  const c = loadStageConfig(CFG, {
    'training.dataset_path': dir,
    'training.jsonl_paths': ['9sec.jsonl'],
    'training.global_batch_size': 4,
    ...extra,
  }).config;
  return { dir, c, d: modelDims(c) };
}

function same(a: Batch, b: Batch): void {
  assert.deepEqual(a.sampleIds, b.sampleIds);
  for (const k of ['noisy', 'target', 'text', 'timesteps'] as const) {
    assert.deepEqual(a[k].shape, b[k].shape, k);
    assert.deepEqual(a[k].dataSync(), b[k].dataSync(), k);
  }
}

const noSkip = (): SkipPolicy => ({ maxBad: 0, bad: new Map() });

test('prefetched batches equal makeBatch, for guessed and unguessed keys, with accumulation', async () => {
  await initBackend('wasm');
  const { dir, c, d } = fileDataset(6);
  const ready: string[] = [];
  // 4 samples per step in 2 micro-batches of 2.
  const pf = openPrefetcher({
    config: c,
    dims: d,
    microSize: 2,
    accum: 2,
    skip: noSkip(),
    onReady: (s, m) => ready.push(`${s}/${m}`),
  });
  const src = openDataSource(c, d);
  try {
    // In order, then a jump (as after a rollback that skips data step 3), then back.
    for (const [s, m] of [
      [1, 0],
      [1, 1],
      [2, 0],
      [2, 1],
      [4, 0],
      [4, 1],
      [5, 0],
      [2, 0],
    ] as const) {
      const got = await pf.take(s, m);
      const want = makeBatch(src, d, c.training.seed, s, 4, m, 2);
      same(got, want);
      disposeBatch(got);
      disposeBatch(want);
    }
    assert.equal(pf.stats.batches, 8);
    assert.ok(ready.includes('3/0'), 'the guess 3/0 was built before the jump dropped it');
  } finally {
    await pf.close();
    fs.rmSync(dir, { recursive: true, force: true });
  }
});

test('the next micro-batches are built before they are asked for', async () => {
  await initBackend('wasm');
  const { dir, c, d } = fileDataset(4);
  let readyKey = (_k: string): void => {};
  const pf = openPrefetcher({
    config: c,
    dims: d,
    microSize: 4,
    accum: 1,
    skip: noSkip(),
    depth: 2,
    onReady: (s, m) => readyKey(`${s}/${m}`),
  });
  try {
    const seen = new Set<string>();
    const both = new Promise<void>((resolve) => {
      readyKey = (k) => {
        seen.add(k);
        if (seen.has('2/0') && seen.has('3/0')) resolve();
      };
    });
    disposeBatch(await pf.take(1, 0));
    await both; // built with no take() pending: ahead of the training thread, two deep
    assert.ok(!seen.has('4/0'), 'the queue is bounded by depth');
    const before = pf.stats.waited;
    disposeBatch(await pf.take(2, 0));
    disposeBatch(await pf.take(3, 0));
    assert.equal(pf.stats.waited, before, 'batches built ahead are taken without waiting');
  } finally {
    await pf.close();
    fs.rmSync(dir, { recursive: true, force: true });
  }
});

test('bad samples are skipped in the thread and reported at take; too many is the DataError of makeBatch', async () => {
  await initBackend('wasm');
  const { dir, c, d } = fileDataset(4, { 'training.global_batch_size': 1 });
  fs.rmSync(path.join(dir, 'latents/9sec-1.npy'));
  fs.rmSync(path.join(dir, 'latents/9sec-3.npy'));
  const order = [1, 2, 3, 4, 5, 6];
  const run = async (maxBad: number) => {
    const skipped: number[] = [];
    const skip: SkipPolicy = { maxBad, bad: new Map(), onSkip: (id) => skipped.push(id) };
    const pf = openPrefetcher({ config: c, dims: d, microSize: 1, accum: 1, skip });
    const ids: number[] = [];
    try {
      for (const s of order) {
        const b = await pf.take(s, 0);
        ids.push(...b.sampleIds);
        disposeBatch(b);
      }
    } finally {
      await pf.close();
    }
    return { ids, skipped, bad: skip.bad };
  };
  // The same run on the calling thread (makeBatch's own skipping) is the reference.
  const inline = async (maxBad: number) => {
    const skipped: number[] = [];
    const skip: SkipPolicy = { maxBad, bad: new Map(), onSkip: (id) => skipped.push(id) };
    const pf = openPrefetcher({ config: c, dims: d, microSize: 1, accum: 1, skip, thread: false });
    const ids: number[] = [];
    for (const s of order) {
      const b = await pf.take(s, 0);
      ids.push(...b.sampleIds);
      disposeBatch(b);
    }
    return { ids, skipped, bad: skip.bad };
  };
  const threaded = await run(2);
  const reference = await inline(2);
  assert.deepEqual(threaded.ids, reference.ids);
  assert.deepEqual(threaded.skipped, reference.skipped);
  assert.deepEqual([...threaded.bad.keys()].sort(), [1, 3]);
  await assert.rejects(
    run(1),
    (e: unknown) =>
      e instanceof UserError &&
      e.kind === 'DataError' &&
      /2 bad samples, more than training\.max_bad_samples = 1/.test(e.message) &&
      /9sec\.jsonl:2: .*9sec-1\.npy does not exist/.test(e.message),
  );
  fs.rmSync(dir, { recursive: true, force: true });
});
