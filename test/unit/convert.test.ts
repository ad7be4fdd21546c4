/**
 * CogVideoX diffusers -> TTT-Video-DiT conversion on a tiny fixture with real key names: exact
 * values, every parameter with its PyTorch shape, the added TTT parameters initialised as
 * TTT-Video-DiT does, sharded output, idempotence through the manifest, and bad inputs that fail
 * with a ConvertError listing the problems, writing nothing.
 */
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { test } from 'node:test';
import { encodeSafetensors, readHeader, readSafetensors } from '../../src/io/safetensors';
import { loadModelWeights, tensorsHash } from '../../src/checkpoint/store';
import { loadStageConfig } from '../../src/config/load';
import { convertDiffusers, MANIFEST, type ConvertManifest } from '../../src/convert/convert';
import { ConvertError, DIFFUSERS_INDEX } from '../../src/convert/diffusers';
import { diffusersName, PER_BLOCK, TOP_LEVEL, tttName } from '../../src/convert/keymap';
import { writeSyntheticDiffusers } from '../../src/convert/synth';
import { modelDims } from '../../src/config/dims';
import { initialValue, paramSpecs } from '../../src/model/params';
import { CLI, ROOT, sha256File, tmpDir, writesDuring } from '../helpers';
import { assertConvertedFromDiffusers, diffusersFixture, TINY } from './fixtures';

const stage = loadStageConfig(path.join(ROOT, 'configs/train/tiny/3s.toml'));
const specs = paramSpecs(modelDims(stage.config));

const equal = (a: Float32Array, b: Float32Array): boolean =>
  a.length === b.length &&
  Buffer.compare(
    Buffer.from(a.buffer, a.byteOffset, a.byteLength),
    Buffer.from(b.buffer, b.byteOffset, b.byteLength),
  ) === 0;

test('the key map is the issue table, both ways, and covers every parameter but the TTT layer and its gates', () => {
  assert.equal(TOP_LEVEL.length, 8);
  assert.equal(PER_BLOCK.length, 12);
  assert.equal(tttName('transformer_blocks.7.attn1.to_out.0.weight'), 'dit.layers.7.seq_modeling_block.o.weight');
  assert.equal(tttName('norm_out.linear.bias'), 'dit.final_layer.adaLN_modulation.1.bias');
  assert.equal(tttName('transformer_blocks.07.attn1.to_q.weight'), undefined, 'no leading zeros');
  assert.equal(tttName('transformer_blocks.0.attn1.to_q.scale'), undefined);
  for (const s of specs) {
    const d = diffusersName(s.name);
    if (d) assert.equal(tttName(d), s.name);
    else assert.match(s.name, /\.ssm\.ttt\.|_ssm_gating_/, `${s.name} is added by TTT-Video-DiT`);
  }
});

test("a CogVideoX transformer saved by diffusers (BF16, 4 shards) converts exactly: every tensor under TTT-Video-DiT's name, with torch's shape and values", async () => {
  const dir = tmpDir('cv');
  const from = path.join(dir, 'cogvideox');
  const fx = diffusersFixture(from);
  const shards = fx.files.filter((f) => f.endsWith('.safetensors'));
  assert.equal(shards.length, 4, `save_pretrained wrote ${fx.files.join(', ')}`);
  assert.ok(fx.files.includes(DIFFUSERS_INDEX));
  assert.ok(Object.values(fx.tensors).every((t) => t.dtype === 'bfloat16'));
  const out = path.join(dir, 'out');
  const r = await convertDiffusers({ from, out, seed: 3 });
  assert.equal(r.reused, false);
  assert.deepEqual(r.weightFiles, ['model.safetensors']);
  assert.deepEqual(r.tensors, { mapped: Object.keys(fx.tensors).length, added: 44 });
  assert.equal(r.tensors.mapped, 64);
  const header = readHeader(path.join(out, 'model.safetensors'));
  assert.deepEqual(
    [...header.tensors.keys()].sort(),
    specs.map((s) => s.name).sort(),
    'exactly the TTT-Video-DiT keys',
  );
  for (const s of specs) {
    assert.deepEqual(header.tensors.get(s.name)!.shape, s.torchShape, `${s.name}: PyTorch shape`);
    assert.equal(header.tensors.get(s.name)!.dtype, 'F32');
  }
  assert.deepEqual(header.metadata, { format: 'pt' });
  const got = readSafetensors(path.join(out, 'model.safetensors')).tensors;
  // Checked by the names TTT-Video-DiT's converter gives diffusers' tensors, against the values torch held.
  assert.equal(
    assertConvertedFromDiffusers(fx, (n) => got.get(n), 'converted'),
    specs.filter((s) => diffusersName(s.name)).length,
  );
  // Added parameters: initialised as TTT-Video-DiT does (W ~ N(0, 0.02), b 0, norms 1/0, gates 0.1), from the seed.
  const l0 = 'dit.layers.0.seq_modeling_block';
  const all = (name: string, v: number): boolean => got.get(name)!.data.every((x) => x === v);
  for (const g of [
    'forward_ssm_gating_video',
    'forward_ssm_gating_text',
    'backward_ssm_gating_video',
    'backward_ssm_gating_text',
  ])
    assert.ok(got.get(`${l0}.${g}.gating_alpha`)!.data.every((x) => Math.abs(x - 0.1) < 1e-7));
  for (const n of ['b1', 'b2', 'learnable_ttt_lr_bias', 'ttt_norm_bias', 'post_norm.bias', 'wq.bias', 'wo.bias'])
    assert.ok(all(`${l0}.ssm.ttt.${n}`, 0), `${n} = 0`);
  for (const n of ['ttt_norm_weight', 'post_norm.weight']) assert.ok(all(`${l0}.ssm.ttt.${n}`, 1), `${n} = 1`);
  assert.deepEqual(got.get(`${l0}.ssm.ttt.W1`)!.shape, [2, 16, 64]);
  assert.deepEqual(got.get(`${l0}.ssm.ttt.b1`)!.shape, [2, 1, 64]);
  const w = [
    ...got.get(`${l0}.ssm.ttt.W1`)!.data,
    ...got.get(`${l0}.ssm.ttt.W2`)!.data,
    ...got.get(`${l0}.ssm.ttt.wq.weight`)!.data,
  ];
  const std = Math.sqrt(w.reduce((a, x) => a + x * x, 0) / w.length);
  assert.ok(Math.abs(std - 0.02) < 0.002, `std of W1, W2, wq = ${std}`);
  for (const s of specs.filter((s) => !diffusersName(s.name)))
    assert.ok(equal(got.get(s.name)!.data, initialValue(s, 3)), `${s.name}: initialValue(seed 3)`);
  // The manifest and the model config.
  const manifest = JSON.parse(fs.readFileSync(path.join(out, MANIFEST), 'utf8')) as ConvertManifest;
  assert.equal(manifest.inputHash, r.inputHash);
  assert.deepEqual(Object.keys(manifest.inputFiles), ['config.json', DIFFUSERS_INDEX, ...shards]);
  assert.deepEqual(JSON.parse(fs.readFileSync(path.join(out, 'config.json'), 'utf8')), {
    ...TINY,
    ssm_layer: 'ttt_mlp',
  });
  // loadModelWeights (what init_state_dir uses) verifies the manifest's checksums and returns the same tensors.
  assert.equal(tensorsHash(loadModelWeights(out)), tensorsHash(got));
  const f = path.join(out, 'model.safetensors');
  const b = fs.readFileSync(f);
  b[b.length - 1]! ^= 1;
  fs.writeFileSync(f, b);
  assert.throws(
    () => loadModelWeights(out),
    /converted weights are not usable: model.safetensors fails its sha256 checksum/,
  );
});

test('bfloat16 output keeps the BF16 bytes; F16 and F32 inputs convert exactly; sharded output loads the same; ttt_linear adds W1/b1 only', async () => {
  const dir = tmpDir('cv-dtypes');
  const bf = path.join(dir, 'bf16');
  const fx = diffusersFixture(bf, { maxShardSize: '10MB' });
  assert.ok(fx.files.includes('diffusion_pytorch_model.safetensors'), 'one file');
  await convertDiffusers({ from: bf, out: path.join(dir, 'o-bf16'), dtype: 'bfloat16' });
  const outHeader = readHeader(path.join(dir, 'o-bf16', 'model.safetensors'));
  assert.ok([...outHeader.tensors.values()].every((t) => t.dtype === 'BF16'));
  const outBytes = fs.readFileSync(path.join(dir, 'o-bf16', 'model.safetensors'));
  assertConvertedFromDiffusers(
    fx,
    (n) => {
      const o = outHeader.tensors.get(n);
      return (
        o && { shape: o.shape, raw: outBytes.subarray(outHeader.dataStart + o.begin, outHeader.dataStart + o.end) }
      );
    },
    'bfloat16 output',
  );
  for (const dtype of ['float16', 'float32'] as const) {
    const from = path.join(dir, dtype);
    const f = diffusersFixture(from, { dtype });
    assert.ok(f.files.filter((n) => n.endsWith('.safetensors')).length > 1, `${dtype}: shards`);
    const out = path.join(dir, `o-${dtype}`);
    await convertDiffusers({ from, out });
    const got = loadModelWeights(out);
    assertConvertedFromDiffusers(f, (n) => got.get(n), `${dtype} input`);
    // Sharded output: several files plus an index; the same tensors.
    const sharded = path.join(dir, `o-${dtype}-sharded`);
    const r = await convertDiffusers({ from, out: sharded, maxPartBytes: 40_000 });
    assert.ok(r.weightFiles.length >= 3, `${r.weightFiles.length} shards`);
    assert.deepEqual(
      r.weightFiles,
      fs
        .readdirSync(sharded)
        .filter((f) => /^model-\d{5}-of-\d{5}\.safetensors$/.test(f))
        .sort(),
    );
    const index = JSON.parse(fs.readFileSync(path.join(sharded, 'model.safetensors.index.json'), 'utf8')) as {
      weight_map: Record<string, string>;
      metadata: { total_size: number };
    };
    assert.deepEqual(Object.keys(index.weight_map).sort(), specs.map((s) => s.name).sort());
    assert.equal(tensorsHash(loadModelWeights(sharded)), tensorsHash(got));
  }
  const lin = await convertDiffusers({ from: bf, out: path.join(dir, 'o-linear'), ssmLayer: 'ttt_linear' });
  const h = readHeader(path.join(lin.out, 'model.safetensors'));
  assert.deepEqual(h.tensors.get('dit.layers.1.seq_modeling_block.ssm.ttt.W1')!.shape, [2, 16, 16]);
  assert.equal(h.tensors.has('dit.layers.1.seq_modeling_block.ssm.ttt.W2'), false);
});

test('converting the same input twice reuses the first output; a changed input or changed options convert again', async () => {
  const dir = tmpDir('cv-idem');
  const from = path.join(dir, 'cogvideox');
  const shards = writeSyntheticDiffusers(from, TINY, { dtype: 'BF16', shards: 2, seed: 1 });
  const out = path.join(dir, 'out');
  const first = await convertDiffusers({ from, out });
  const weights = path.join(out, 'model.safetensors');
  const before = { ino: fs.statSync(weights).ino, sha: sha256File(weights) };
  const manifestBefore = fs.readFileSync(path.join(out, MANIFEST), 'utf8');
  // "Not rewritten" is observed: no write, create, rename or removal in the output folder
  // (inotify) during the second conversion, and the same file (inode) with the same bytes after.
  const { result: second, writes } = await writesDuring(out, () => convertDiffusers({ from, out }));
  assert.equal(second.reused, true);
  assert.equal(second.inputHash, first.inputHash);
  assert.deepEqual(writes, [], 'nothing was written in the output folder');
  assert.deepEqual({ ino: fs.statSync(weights).ino, sha: sha256File(weights) }, before, 'the output was not rewritten');
  assert.equal(fs.readFileSync(path.join(out, MANIFEST), 'utf8'), manifestBefore);
  // Other options: converted again.
  const other = await convertDiffusers({ from, out, seed: 7 });
  assert.equal(other.reused, false);
  // One tensor value changed (same size, same header): the content hash differs, converted again.
  const f = shards[1]!;
  const b = fs.readFileSync(f);
  b[b.length - 2]! ^= 0x01;
  fs.writeFileSync(f, b);
  const third = await convertDiffusers({ from, out, seed: 7 });
  assert.equal(third.reused, false);
  assert.notEqual(third.inputHash, first.inputHash);
  assert.equal(fs.readdirSync(dir).filter((n) => n.startsWith('.')).length, 0, 'no temporary folders left');
});

test('bad inputs fail with a ConvertError that lists the problems, and write nothing', async () => {
  const dir = tmpDir('cv-bad');
  let n = 0;
  const expectFailure = async (prepare: (from: string) => void, pattern: RegExp): Promise<void> => {
    const from = path.join(dir, `in-${++n}`);
    prepare(from);
    const out = path.join(dir, `out-${n}`);
    await assert.rejects(convertDiffusers({ from, out }), (e: unknown) => {
      assert.ok(e instanceof ConvertError, `case ${n}: ${String(e)}`);
      assert.equal(e.kind, 'ConvertError');
      assert.match(e.message, pattern, `case ${n}`);
      assert.match(e.message, /Fix: /);
      return true;
    });
    assert.equal(fs.existsSync(out), false, `case ${n}: no output`);
  };
  const synth = (opts: Parameters<typeof writeSyntheticDiffusers>[2]) => (from: string) =>
    void writeSyntheticDiffusers(from, TINY, { dtype: 'BF16', shards: 2, ...opts });
  // Unknown and missing keys, all listed.
  await expectFailure(
    synth({
      tensors: (l) => [
        ...l.filter((t) => !t.name.startsWith('transformer_blocks.1.ff.')),
        { name: 'pos_embedding', shape: [4] },
        { name: 'transformer_blocks.5.attn1.to_q.weight', shape: [32, 32] },
      ],
    }),
    /unknown tensors .*: pos_embedding, transformer_blocks\.5\.attn1\.to_q\.weight \(1 of them are blocks past num_layers = 2\)[\s\S]*missing tensors: transformer_blocks\.1\.ff\.net\.0\.proj\.weight, transformer_blocks\.1\.ff\.net\.0\.proj\.bias, transformer_blocks\.1\.ff\.net\.2\.weight, transformer_blocks\.1\.ff\.net\.2\.bias/,
  );
  // A shape that disagrees with config.json.
  await expectFailure(
    synth({ tensors: (l) => l.map((t) => (t.name === 'proj_out.weight' ? { ...t, shape: [15, 32] } : t)) }),
    /proj_out\.weight is \[15,32\], expected \[16,32\]/,
  );
  // A dtype other than BF16/F16/F32.
  await expectFailure((from) => {
    writeSyntheticDiffusers(from, TINY, { dtype: 'BF16', shards: 1 });
    const f = path.join(from, 'diffusion_pytorch_model.safetensors');
    const t = readSafetensors(f).tensors;
    fs.writeFileSync(
      f,
      Buffer.concat(
        encodeSafetensors(t).map((b, i) =>
          i === 0 ? Buffer.from(b.toString('latin1').replace('"F32","shape":[32]', '"I32","shape":[32]'), 'latin1') : b,
        ),
      ),
    );
  }, /dtypes other than BF16, F16, F32: .*\(I32\)/);
  // A truncated shard.
  await expectFailure((from) => {
    const [, second] = writeSyntheticDiffusers(from, TINY, { dtype: 'BF16', shards: 2 });
    fs.truncateSync(second!, fs.statSync(second!).size - 10);
  }, /diffusion_pytorch_model-00002-of-00002\.safetensors: .*fall outside the .*data section \(file truncated\?\)/);
  // A shard listed in the index is missing; the index names the wrong file for a tensor.
  await expectFailure((from) => {
    const [first] = writeSyntheticDiffusers(from, TINY, { dtype: 'BF16', shards: 2 });
    fs.rmSync(first!);
  }, /shard files listed in weight_map are missing: diffusion_pytorch_model-00001-of-00002\.safetensors/);
  await expectFailure((from) => {
    writeSyntheticDiffusers(from, TINY, { dtype: 'BF16', shards: 2 });
    const idx = path.join(from, DIFFUSERS_INDEX);
    const j = JSON.parse(fs.readFileSync(idx, 'utf8')) as { weight_map: Record<string, string> };
    j.weight_map['proj_out.bias'] = 'diffusion_pytorch_model-00001-of-00002.safetensors';
    fs.writeFileSync(idx, JSON.stringify(j));
  }, /lists tensors that are not in the file it names: proj_out\.bias/);
  // config.json: missing, a field missing, CogVideoX 1.5.
  await expectFailure((from) => {
    writeSyntheticDiffusers(from, TINY, { shards: 1 });
    fs.rmSync(path.join(from, 'config.json'));
  }, /config\.json: cannot read the model config/);
  await expectFailure((from) => {
    writeSyntheticDiffusers(from, TINY, { shards: 1 });
    const c = JSON.parse(fs.readFileSync(path.join(from, 'config.json'), 'utf8')) as Record<string, unknown>;
    delete c.time_embed_dim;
    c.patch_size_t = 2;
    fs.writeFileSync(path.join(from, 'config.json'), JSON.stringify(c));
  }, /time_embed_dim = undefined \(expected a positive integer\); patch_size_t = 2: CogVideoX 1\.5/);
  // An output folder that holds something else is left alone.
  const from = path.join(dir, 'good');
  writeSyntheticDiffusers(from, TINY, { shards: 1 });
  const busy = path.join(dir, 'busy');
  fs.mkdirSync(busy);
  fs.writeFileSync(path.join(busy, 'notes.txt'), 'mine');
  await assert.rejects(
    convertDiffusers({ from, out: busy }),
    /is not empty and holds no convert\.json .* it is left alone/,
  );
  assert.deepEqual(fs.readdirSync(busy), ['notes.txt']);
});

test('the convert command prints what it did, and a bad input exits 1 with the error', () => {
  const dir = tmpDir('cv-cli');
  const from = path.join(dir, 'cogvideox');
  writeSyntheticDiffusers(from, TINY, { dtype: 'BF16', shards: 2 });
  const run = (...args: string[]) =>
    spawnSync(process.execPath, [CLI, 'convert', ...args], {
      cwd: ROOT,
      encoding: 'utf8',
      env: { ...process.env, TTT_LOG_PRETTY: '0' },
    });
  const ok = run('--from', from, '--out', path.join(dir, 'out'), '--max-file-size', '50KB');
  assert.equal(ok.status, 0, ok.stderr);
  assert.match(ok.stdout, /converted 64 tensors and added 44 TTT parameters: .* \(float32\) in /);
  assert.match(ok.stdout, /out: \d+ files \+ model\.safetensors\.index\.json, config\.json, convert\.json/);
  assert.match(ok.stderr, /"msg":"reading input file"/, 'progress is logged per input file');
  // diffusers' name for the option gives the same conversion, which is kept.
  const again = run('--from', from, '--out', path.join(dir, 'out'), '--max-shard-size', '50KB');
  assert.match(again.stdout, /already holds this conversion/);
  const bad = run('--from', dir, '--out', path.join(dir, 'out2'));
  assert.equal(bad.status, 1);
  assert.match(bad.stderr, /error: .*config\.json: cannot read the model config .*Fix: point --from/);
});

test('a cancelled conversion stops between chunks and leaves nothing behind', async () => {
  const dir = tmpDir('cv-cancel');
  const from = path.join(dir, 'cogvideox');
  writeSyntheticDiffusers(from, TINY, { dtype: 'BF16', shards: 2 });
  const ac = new AbortController();
  let calls = 0;
  await assert.rejects(
    convertDiffusers({
      from,
      out: path.join(dir, 'out'),
      signal: ac.signal,
      onProgress: () => void (++calls === 5 && ac.abort(new Error('test: cancelled'))),
    }),
    /test: cancelled/,
  );
  assert.ok(calls >= 5);
  assert.deepEqual(fs.readdirSync(dir), ['cogvideox'], 'neither the output nor a temporary folder');
});
