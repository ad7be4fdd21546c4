/**
 * `dataset import` on a TTT-Video-DiT dataset written with torch (test/python/write_ttt_dataset.py,
 * saved as its precompute scripts save: BF16 .pt files, text rows that are views of a batch):
 * every tensor arrives with torch's shape and values, the JSONL is rewritten and read by our
 * reader, progress is shown, a second run converts nothing, a changed source is converted again,
 * and a Python without torch or a .pt that is not one tensor fail with a clear error.
 */
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import * as crypto from 'node:crypto';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { test } from 'node:test';
import { loadStageConfig } from '../../src/config/load';
import { modelDims } from '../../src/config/dims';
import { openJsonlDataset } from '../../src/data/jsonl';
import { readTensorFile } from '../../src/data/files';
import { CLI, pythonWithSafetensors, pythonWithTorch, ROOT, runPython, tmpDir } from '../helpers';

const CFG = path.join(ROOT, 'configs/train/tiny/3s.toml');
const d = modelDims(loadStageConfig(CFG).config);
const SAMPLES = 3;

interface Written {
  [rel: string]: { dtype: string; shape: number[]; sha256_f32: string };
}

const sha = (a: Float32Array): string =>
  crypto
    .createHash('sha256')
    .update(Buffer.from(a.buffer, a.byteOffset, a.byteLength))
    .digest('hex');

function importCli(...args: string[]) {
  return spawnSync(process.execPath, [CLI, 'dataset', 'import', ...args], {
    cwd: ROOT,
    encoding: 'utf8',
    env: { ...process.env, TTT_LOG_PRETTY: '0' },
  });
}

/** A TTT-Video-DiT dataset of the tiny 3s sizes, written with torch. */
function tttDataset(dir: string): Written {
  const dims = {
    T: d.latentFrames,
    C: d.inChannels,
    H: d.latentHeight,
    W: d.latentWidth,
    L: d.textLength,
    E: d.textDim,
    segments: d.segments,
  };
  return runPython<Written>(
    'write_ttt_dataset.py',
    [dir, JSON.stringify(dims), String(SAMPLES), '5'],
    pythonWithTorch(),
  );
}

test('dataset import converts a TTT-Video-DiT dataset written with torch: torch values, our JSONL, idempotent', () => {
  const dir = tmpDir('ttt-import');
  const from = path.join(dir, 'ttt-video-dit');
  const written = tttDataset(from);
  const files = Object.keys(written);
  assert.equal(files.length, SAMPLES * (1 + d.segments));
  assert.ok(Object.values(written).every((w) => w.dtype === 'bfloat16'));
  const out = path.join(dir, 'ours');
  const r = importCli(from, '--out', out, '--python', pythonWithTorch());
  assert.equal(r.status, 0, r.stderr);
  assert.match(
    r.stdout,
    new RegExp(
      `imported ${SAMPLES} samples into .* ${files.length} \\.pt files converted to \\.safetensors with torch [\\d.]+\\S* \\(torch\\.load weights_only=True\\), 0 copied, 0 kept`,
    ),
  );
  assert.match(r.stdout, /use: --training\.dataset_path=\S+ --training\.jsonl_paths='\["train_3s\.jsonl"\]'/);
  assert.match(r.stderr, new RegExp(`imported ${files.length}/${files.length} files`), 'progress');
  // Every tensor: torch's shape and values, under the same relative path as .safetensors.
  for (const [rel, w] of Object.entries(written)) {
    const t = readTensorFile(path.join(out, rel.replace(/\.pt$/, '.safetensors')));
    assert.deepEqual(t.shape, w.shape, `${rel}: shape`);
    assert.equal(sha(t.data), w.sha256_f32, `${rel}: torch's values`);
  }
  // The JSONL: the same samples, relative .safetensors paths (the absolute one made relative).
  const lines = fs
    .readFileSync(path.join(out, 'train_3s.jsonl'), 'utf8')
    .trim()
    .split('\n')
    .map((l) => JSON.parse(l) as { vid_emb: string; text_chunk_emb: string[] });
  assert.equal(lines.length, SAMPLES);
  lines.forEach((l, n) => {
    assert.equal(
      l.vid_emb,
      `vae_latents/episode_${String(Math.floor(n / 2)).padStart(3, '0')}/video_sample_000${n}.safetensors`,
    );
    assert.equal(l.text_chunk_emb.length, d.segments);
    assert.ok(l.text_chunk_emb.every((t) => /^text_embeddings\/.*_txt_emb\.safetensors$/.test(t)));
  });
  // Our reader takes it: the posterior is sampled, every sample has the stage's sizes.
  const stage = loadStageConfig(CFG, { 'training.dataset_path': out, 'training.jsonl_paths': ['train_3s.jsonl'] });
  const ds = openJsonlDataset(stage.config, d);
  assert.equal(ds.size, SAMPLES);
  for (let n = 0; n < SAMPLES; n++) {
    const s = ds.sample(n);
    assert.equal(s.video.length, d.latentFrames * d.inChannels * d.latentHeight * d.latentWidth);
    assert.equal(s.text.length, d.segments * d.textLength * d.textDim);
    assert.ok(s.video.every(Number.isFinite));
  }
  // Again: nothing converted, no file replaced (same inodes: every write is a rename of a new file).
  const inode = (rel: string) => fs.statSync(path.join(out, rel)).ino;
  const outFiles = files.map((f) => f.replace(/\.pt$/, '.safetensors'));
  const before = outFiles.map(inode);
  const again = importCli(from, '--out', out, '--python', pythonWithTorch());
  assert.equal(again.status, 0, again.stderr);
  assert.match(again.stdout, new RegExp(`0 \\.pt files converted to \\.safetensors, 0 copied, ${files.length} kept`));
  assert.deepEqual(outFiles.map(inode), before, 'no file rewritten');
  // A changed source (new mtime) is converted again, alone.
  const touched = path.join(from, files[1]!);
  fs.utimesSync(touched, new Date(), new Date(Date.now() + 5000));
  const third = importCli(from, '--out', out, '--python', pythonWithTorch());
  assert.equal(third.status, 0, third.stderr);
  assert.match(third.stdout, new RegExp(`1 \\.pt files converted .*, ${files.length - 1} kept`));
  assert.notEqual(inode(outFiles[1]!), before[1]);
});

test('dataset import without torch, or with a .pt that is not one tensor, fails with a clear error', () => {
  const dir = tmpDir('ttt-import-bad');
  const from = path.join(dir, 'ttt-video-dit');
  tttDataset(from);
  // A Python without torch (the interop venv has numpy and safetensors only), and one that does not exist.
  const noTorch = importCli(from, '--out', path.join(dir, 'a'), '--python', pythonWithSafetensors());
  assert.equal(noTorch.status, 1);
  assert.match(
    noTorch.stderr,
    /error: dataset import: reading TTT-Video-DiT's \.pt files needs Python with torch, and none was found \(tried .*No module named 'torch'.*\)\. Fix: .*--python/,
  );
  const missing = importCli(from, '--out', path.join(dir, 'b'), '--python', path.join(dir, 'no-python'));
  assert.equal(missing.status, 1);
  assert.match(missing.stderr, /needs Python with torch.*tried .*no-python: ENOENT/);
  // A .pt holding two tensors: that file is named, the others are imported and kept for the next run.
  const bad = path.join(from, 'text_embeddings', 'episode_000', 'video_sample_0000_seg0_txt_emb.pt');
  const py = spawnSync(
    pythonWithTorch(),
    ['-c', `import torch; torch.save({"a": torch.zeros(2), "b": torch.ones(2)}, ${JSON.stringify(bad)})`],
    { encoding: 'utf8' },
  );
  assert.equal(py.status, 0, py.stderr);
  const out = path.join(dir, 'c');
  const r = importCli(from, '--out', out, '--python', pythonWithTorch());
  assert.equal(r.status, 1);
  assert.match(
    r.stderr,
    /torch could not read 1 file\(s\):\n {2}- \S*video_sample_0000_seg0_txt_emb\.pt \(\S*train_3s\.jsonl:1\): ValueError: holds dict with 2 tensors/,
  );
  assert.ok(fs.existsSync(path.join(out, 'vae_latents', 'episode_000', 'video_sample_0000.safetensors')));
  assert.equal(fs.existsSync(path.join(out, 'train_3s.jsonl')), false, 'no JSONL until every file is imported');
});
