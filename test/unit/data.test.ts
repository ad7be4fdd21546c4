/** The JSONL dataset of precomputed embeddings, the synthetic dataset writer, and bad data. */
import assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { test } from 'node:test';
import { encodeSafetensors } from '../../src/io/safetensors';
import { loadStageConfig } from '../../src/config/load';
import { makeBatch, openDataSource } from '../../src/data/batch';
import { readNpy, writeNpy } from '../../src/io/npy';
import { writeSynthDataset } from '../../src/data/synthfiles';
import { UserError } from '../../src/errors';
import { modelDims } from '../../src/config/dims';
import pino from 'pino';
import { logger } from '../../src/log';
import { ROOT, tmpDir } from '../helpers';

/** Shards bounded by steps only: shard.max_seconds would end one early on a slow machine. */
const UNBOUNDED = Number.POSITIVE_INFINITY;

const CFG = path.join(ROOT, 'configs/train/tiny/9s.toml');

function fileStage(dir: string, extra: Record<string, unknown> = {}) {
  return loadStageConfig(CFG, { 'training.dataset_path': dir, 'training.jsonl_paths': ['9sec.jsonl'], ...extra });
}

/** The in-memory synthetic source of 5 samples and the same samples written as a file dataset by `dataset synth`. */
function synthSources(name: string) {
  const dir = tmpDir(name);
  const mem = loadStageConfig(CFG, { 'training.synthetic_samples': 5 });
  const d = modelDims(mem.config);
  writeSynthDataset(dir, mem.config, d, 5);
  const file = fileStage(dir);
  return { d, mem: openDataSource(mem.config, d), file: openDataSource(file.config, modelDims(file.config)) };
}

test('the file dataset written by `dataset synth` gives the same batches as the in-memory synthetic source', () => {
  const { d, mem: a, file: b } = synthSources('synth');
  assert.equal(b.size, 5);
  for (const step of [1, 2, 3, 7]) {
    const x = makeBatch(a, d, 0, step, 2, 0, 2);
    const y = makeBatch(b, d, 0, step, 2, 0, 2);
    assert.deepEqual(y.sampleIds, x.sampleIds);
    for (const k of ['noisy', 'target', 'text', 'timesteps'] as const) {
      assert.deepEqual(Array.from(y[k].dataSync()), Array.from(x[k].dataSync()), `step ${step}: ${k}`);
    }
  }
});

test("a micro-batch of one sample (built in the sample's own arrays) equals its slice of a larger micro-batch", () => {
  const { d, mem, file } = synthSources('synth-one');
  for (const src of [mem, file]) {
    for (const step of [1, 4]) {
      // Global batch 2: one micro-batch of 2 samples, or two micro-batches of 1 (slots 0 and 1).
      const both = makeBatch(src, d, 0, step, 2, 0, 2);
      const ones = [0, 1].map((micro) => makeBatch(src, d, 0, step, 2, micro, 1));
      assert.deepEqual(
        ones.flatMap((o) => o.sampleIds),
        both.sampleIds,
      );
      for (const k of ['noisy', 'target', 'text', 'timesteps'] as const) {
        const joined = ones.flatMap((o) => Array.from(o[k].dataSync()));
        assert.deepEqual(joined, Array.from(both[k].dataSync()), `step ${step}: ${k}`);
      }
    }
  }
});

test('a VAE posterior [T, 2C, H, W] is sampled as (mean + exp(logvar/2) eps) * vae_scale_factor', () => {
  const dir = tmpDir('posterior');
  const st = loadStageConfig(CFG, {});
  const d = modelDims(st.config);
  writeSynthDataset(dir, st.config, d, 1);
  const latent = readNpy(path.join(dir, 'latents/9sec-0.npy'));
  const [T, C, H, W] = latent.shape as [number, number, number, number];
  // Posterior with mean = the latent and logvar = -200 (std e^-100): the sample is the mean, scaled.
  const post = new Float32Array(T * 2 * C * H * W).fill(-200);
  for (let t = 0; t < T; t++) post.set(latent.data.subarray(t * C * H * W, (t + 1) * C * H * W), t * 2 * C * H * W);
  writeNpy(path.join(dir, 'latents/9sec-0.npy'), { shape: [T, 2 * C, H, W], data: post });
  const src = openDataSource(fileStage(dir, { 'training.vae_scale_factor': 0.5 }).config, d);
  const s = src.sample(0);
  s.video.forEach((x, i) => assert.ok(Math.abs(x - 0.5 * latent.data[i]!) < 1e-6));
});

function expectDataError(fn: () => unknown, pattern: RegExp): void {
  assert.throws(
    fn,
    (e: unknown) => e instanceof UserError && e.kind === 'DataError' && pattern.test(e.message),
    `expected a DataError matching ${pattern}`,
  );
}

test('bad data names the JSONL file and line: missing file, wrong shape, wrong segment count, truncated file, pickles', () => {
  const dir = tmpDir('baddata');
  const st = loadStageConfig(CFG, {});
  const d = modelDims(st.config);
  writeSynthDataset(dir, st.config, d, 3);
  const jsonl = path.join(dir, '9sec.jsonl');
  const lines = fs.readFileSync(jsonl, 'utf8').trim().split('\n');
  const open = () => openDataSource(fileStage(dir).config, d);
  // Missing file (line 2).
  fs.rmSync(path.join(dir, 'latents/9sec-1.npy'));
  expectDataError(() => open().sample(1), /9sec\.jsonl:2: .*9sec-1\.npy does not exist/);
  // Wrong shape (line 3): 36 latent frames instead of 37.
  const v = readNpy(path.join(dir, 'latents/9sec-2.npy'));
  const per = v.data.length / 37;
  writeNpy(path.join(dir, 'latents/9sec-2.npy'), {
    shape: [36, ...v.shape.slice(1)],
    data: v.data.subarray(0, 36 * per),
  });
  expectDataError(
    () => open().sample(2),
    /9sec\.jsonl:3: vid_emb .* has shape \[36, 4, 4, 4\], expected \[37, 4, 4, 4\]/,
  );
  // Truncated file (line 1).
  const f0 = path.join(dir, 'latents/9sec-0.npy');
  fs.truncateSync(f0, fs.statSync(f0).size - 10);
  expectDataError(() => open().sample(0), /9sec\.jsonl:1: .*truncated/);
  // Wrong segment count (line 2), found when the JSONL is read.
  const two = JSON.parse(lines[1]!) as { vid_emb: string; text_chunk_emb: string[] };
  two.text_chunk_emb.pop();
  fs.writeFileSync(jsonl, `${[lines[0], JSON.stringify(two), lines[2]].join('\n')}\n`);
  expectDataError(open, /9sec\.jsonl:2: 2 text chunks, but a 9sec video has 3 segments/);
  // A PyTorch pickle gets the conversion command.
  fs.writeFileSync(path.join(dir, 'latents/x.pt'), 'not read');
  fs.writeFileSync(
    jsonl,
    JSON.stringify({ vid_emb: 'latents/x.pt', text_chunk_emb: two.text_chunk_emb.concat([two.text_chunk_emb[0]!]) }) +
      '\n',
  );
  expectDataError(
    () => open().sample(0),
    /9sec\.jsonl:1: .*\.pt files are Python pickles.*Fix: convert it: python -c "import torch, numpy; numpy\.save/,
  );
  // A text chunk of the wrong length.
  fs.writeFileSync(
    path.join(dir, 'text/short.safetensors'),
    Buffer.concat(
      encodeSafetensors(new Map([['t', { shape: [3, d.textDim], data: new Float32Array(3 * d.textDim) }]])),
    ),
  );
  fs.writeFileSync(
    jsonl,
    lines[0] +
      '\n' +
      JSON.stringify({
        vid_emb: JSON.parse(lines[2]!).vid_emb,
        text_chunk_emb: ['text/short.safetensors', 'text/short.safetensors', 'text/short.safetensors'],
      }) +
      '\n',
  );
  writeNpy(path.join(dir, 'latents/9sec-2.npy'), v);
  expectDataError(() => open().sample(1), /9sec\.jsonl:2: text chunk 0 .* has shape \[3, 16\], expected \[36, 16\]/);
});

test('.npy files round-trip and a bad header is a clear error', () => {
  const dir = tmpDir('npy');
  const f = path.join(dir, 'a.npy');
  writeNpy(f, { shape: [2, 3], data: Float32Array.from([1, 2, 3, 4, 5, 6]) });
  const r = readNpy(f);
  assert.deepEqual(r.shape, [2, 3]);
  assert.deepEqual(Array.from(r.data), [1, 2, 3, 4, 5, 6]);
  fs.writeFileSync(f, 'hello');
  assert.throws(() => readNpy(f), /not a \.npy file/);
});

test('bad samples are skipped with a warning up to training.max_bad_samples, then the run fails with the list', async (t) => {
  const { runShard } = await import('../../src/train/shard');
  // The shard's log lines, captured: its logger is a child of the library's logger.
  const logged: { level: number; msg: string; step?: number; sample?: number; reason?: string }[] = [];
  const capture = pino({ level: 'info' }, { write: (line: string) => logged.push(JSON.parse(line)) });
  t.mock.method(logger, 'child', (bindings: pino.Bindings) => capture.child(bindings));
  const dir = tmpDir('skip');
  const st = loadStageConfig(CFG, {});
  writeSynthDataset(dir, st.config, modelDims(st.config), 4);
  fs.rmSync(path.join(dir, 'latents/9sec-1.npy'));
  fs.rmSync(path.join(dir, 'latents/9sec-3.npy'));
  const overrides = {
    'training.dataset_path': dir,
    'training.jsonl_paths': ['9sec.jsonl'],
    'training.steps': 4,
    'checkpoint.interval': 4,
    'training.global_batch_size': 1,
  };
  const ok = await runShard({
    configFile: CFG,
    overrides: { ...overrides, 'training.max_bad_samples': 2 },
    jobDir: path.join(dir, 'ok'),
    initFrom: null,
    maxSeconds: UNBOUNDED,
  });
  assert.equal(ok.step, 4, 'trained past the two bad samples');
  const warnings = logged.filter((l) => l.msg === 'skipping a bad sample');
  assert.ok(warnings.length >= 2, `a warning per bad sample: ${JSON.stringify(logged.map((l) => l.msg))}`);
  assert.ok(
    warnings.every((w) => w.level === 40 && w.step! >= 1 && w.step! <= 4),
    'at warn level, with the step',
  );
  assert.deepEqual(
    [
      ...new Set(
        warnings.map((w) => w.reason!.replace(/^.*?(9sec\.jsonl:\d+).*?(9sec-\d\.npy) does not exist.*$/s, '$1 $2')),
      ),
    ].sort(),
    ['9sec.jsonl:2 9sec-1.npy', '9sec.jsonl:4 9sec-3.npy'],
    'each warning names the JSONL line and the missing file',
  );
  await assert.rejects(
    runShard({
      configFile: CFG,
      overrides: { ...overrides, 'training.max_bad_samples': 1 },
      jobDir: path.join(dir, 'fail'),
      initFrom: null,
      maxSeconds: UNBOUNDED,
    }),
    (e: unknown) =>
      e instanceof UserError &&
      e.kind === 'DataError' &&
      /2 bad samples, more than training\.max_bad_samples = 1/.test(e.message) &&
      /9sec\.jsonl:2: .*9sec-1\.npy does not exist/.test(e.message) &&
      /9sec\.jsonl:4: .*9sec-3\.npy does not exist/.test(e.message),
  );
});
