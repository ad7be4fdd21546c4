/**
 * The TTT-Video-DiT pieces of the external engine (issue 14): its checkpoint layout, read on
 * step folders written by PyTorch's own DCP writer (test/python/dcp_steps.py), whole and torn;
 * our stage config written as its config file; its progress lines parsed.
 */
import assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { test } from 'node:test';
import { parse as parseToml } from 'smol-toml';
import { loadStageConfig } from '../../src/config/load';
import { ConfigError } from '../../src/errors';
import {
  compileProgressPattern,
  parseProgressLine,
  TTT_VIDEO_DIT_PROGRESS_PATTERN,
} from '../../src/engine/log-progress';
import { TTT_SECTIONS, tttVideoDitProblems, tttVideoDitToml } from '../../src/engine/ttt-video-dit/config';
import { checkDcpFolder, dcpStorageFiles, tttVideoDitLayout } from '../../src/engine/ttt-video-dit/layout';
import { pythonWithTorch, ROOT, runPython, tmpDir } from '../helpers';

interface DcpSteps {
  torch: string;
  steps: Record<string, { files: Record<string, number> }>;
}

test('the DCP layout picks the newest complete step-N: torn ones (no .metadata, a shard missing or short, metadata cut) never', () => {
  const run = tmpDir('dcp');
  const written = runPython<DcpSteps>('dcp_steps.py', [run, '3', '12', '20', '21', '22', '23'], pythonWithTorch());
  const step = (n: number) => path.join(run, 'checkpoint', `step-${n}`);
  for (const n of [3, 12, 20, 21, 22, 23]) assert.equal(checkDcpFolder(step(n)).complete, true, `step-${n} as written`);

  // What our reader reads from .metadata is what torch reads from it.
  const files = dcpStorageFiles(fs.readFileSync(path.join(step(12), '.metadata')));
  assert.deepEqual(
    Object.fromEntries(files.map((f) => [f.relativePath, f.minBytes])),
    written.steps['12']!.files,
    `the files and sizes torch ${written.torch} reads from .metadata`,
  );
  assert.ok(files.length > 1, 'several shard files');

  // A complete step folder is what the next stage's init_state_dir may be; a folder of safetensors is not.
  const next = parseToml(tttVideoDitToml(paperStage('9s', { 'checkpoint.init_state_dir': step(12) }))) as {
    checkpoint: { init_state_dir: string };
  };
  assert.equal(next.checkpoint.init_state_dir, step(12));
  const ours = tmpDir('ours-weights');
  fs.writeFileSync(path.join(ours, 'model.safetensors'), '');
  assert.throws(
    () => tttVideoDitToml(paperStage('3s', { 'checkpoint.init_state_dir': ours })),
    /checkpoint\.init_state_dir = .*loads init weights as a DCP checkpoint.*\.metadata is missing/,
  );

  // Torn the ways a killed save leaves them.
  fs.rmSync(path.join(step(20), '.metadata')); // killed before the coordinator's finish
  fs.rmSync(path.join(step(21), files[1]!.relativePath)); // a shard missing
  const short = path.join(step(22), files[0]!.relativePath);
  fs.truncateSync(short, fs.statSync(short).size - 1); // a shard cut short
  const meta23 = path.join(step(23), '.metadata');
  fs.truncateSync(meta23, Math.floor(fs.statSync(meta23).size / 2)); // the metadata cut
  // Names that are not step folders.
  fs.mkdirSync(path.join(run, 'checkpoint', 'step-30.tmp'));
  fs.writeFileSync(path.join(run, 'checkpoint', 'step-40'), 'a file, not a folder');

  const why = (n: number) => {
    const c = checkDcpFolder(step(n));
    assert.equal(c.complete, false, `step-${n} is torn`);
    return c.complete ? '' : c.reason;
  };
  assert.match(why(20), /\.metadata is missing/);
  assert.match(why(21), new RegExp(`${files[1]!.relativePath} is missing`));
  assert.match(why(22), new RegExp(`${files[0]!.relativePath} has \\d+ bytes, the metadata needs \\d+`));
  assert.match(why(23), /\.metadata is unreadable/);

  // Numerically newest complete: 12 (not 23, the newest torn; not 3, the lexically greatest).
  assert.deepEqual(tttVideoDitLayout.latestComplete(run), { step: 12, dir: step(12) });
  assert.equal(tttVideoDitLayout.name, 'ttt-video-dit');

  // With only torn folders left there is none.
  fs.rmSync(step(12), { recursive: true });
  fs.rmSync(step(3), { recursive: true });
  assert.equal(tttVideoDitLayout.latestComplete(run), null);

  // A .metadata that parses but is not DCP's Metadata is a format we do not know: an error, not "torn".
  fs.copyFileSync(path.join(run, 'not-dcp.metadata'), path.join(step(20), '.metadata'));
  assert.throws(() => tttVideoDitLayout.latestComplete(run), /step-20\/\.metadata: not a DCP Metadata pickle/);
});

test('the DCP layout with nothing to read: no checkpoint folder, an empty one, a folder with only the stats file', () => {
  const run = tmpDir('dcp-empty');
  assert.equal(tttVideoDitLayout.latestComplete(run), null, 'no checkpoint/ folder');
  assert.equal(tttVideoDitLayout.latestComplete(path.join(run, 'no-such-run')), null, 'no experiment folder');
  fs.mkdirSync(path.join(run, 'checkpoint'));
  assert.equal(tttVideoDitLayout.latestComplete(run), null, 'an empty checkpoint/ folder');
  // What TTT-Video-DiT leaves when it dies between save_multi and dcp.save: the folder and its stats.
  fs.mkdirSync(path.join(run, 'checkpoint', 'step-5'));
  fs.writeFileSync(path.join(run, 'checkpoint', 'step-5', 'all_stat_dict.pth'), 'stats');
  fs.mkdirSync(path.join(run, 'checkpoint', 'step-10'));
  assert.equal(tttVideoDitLayout.latestComplete(run), null, 'step folders without DCP files');
});

/** TTT-Video-DiT's config sections and fields (ttt/infra/config_manager.py, the dataclasses of JobConfig). */
const TTT_FIELDS: Record<string, string[]> = {
  job: ['config_file', 'exp_name', 'dump_folder', 'seed'],
  model: ['name', 'size', 'video_length', 'norm_eps', 'scale_factor', 'ssm_layer', 'ttt_base_lr', 'mini_batch_size'],
  training: [
    'adapter_method',
    'dataset_path',
    'jsonl_paths',
    'global_batch_size',
    'grad_accum_steps',
    'warmup_steps',
    'steps',
    'gc_freq',
  ],
  optimizer: ['name', 'lr', 'lr_end', 'lr_ssm', 'lr_schedule', 'lr_ssm_schedule', 'gradient_clipping_norm'],
  checkpoint: ['init_state_dir', 'interval', 'resume', 'resume_step', 'timeout_minutes'],
  parallelism: ['fsdp_unsharded_dtype', 'tp_sharding', 'dp_sharding', 'dp_replicate'],
  remat: [
    'transformer_checkpoint_layer_group_size',
    'scan_checkpoint_group_size',
    'forward_ssm',
    'reverse_ssm',
    'attention',
    'mlp',
    'seq_modeling_block',
    'shard_transformer_inputs',
  ],
  comm: ['init_timeout_seconds'],
  wandb: ['disable', 'project', 'entity', 'log_interval', 'alert'],
};

function paperStage(name: string, overrides: Record<string, unknown> = {}) {
  const file = path.join(ROOT, 'configs/train/ttt-mlp', `${name}.toml`);
  const p = (parseToml(fs.readFileSync(file, 'utf8')) as { parallelism: Record<string, number> }).parallelism;
  const devices = (p.dp_replicate ?? 1) * (p.dp_sharding ?? 1) * (p.tp_sharding ?? 1);
  return loadStageConfig(file, overrides, { checkPaths: false, devices }).config;
}

test('our stage configs become TTT-Video-DiT config files: its sections and fields only, ours moved where it keeps them', () => {
  assert.deepEqual([...TTT_SECTIONS].sort(), Object.keys(TTT_FIELDS).sort());
  for (const name of ['3s', '9s', '18s', '30s', '63s']) {
    const c = paperStage(name, { 'checkpoint.init_state_dir': '/weights/cogvideox-5b-ttt', 'training.seed': 5 });
    const text = tttVideoDitToml(c, { baseDir: '/work' });
    const t = parseToml(text) as Record<string, Record<string, unknown>>;
    for (const [section, fields] of Object.entries(t)) {
      assert.ok(TTT_FIELDS[section], `${name}: [${section}] is one of TTT-Video-DiT's sections`);
      for (const f of Object.keys(fields))
        assert.ok(TTT_FIELDS[section]!.includes(f), `${name}: ${section}.${f} is one of its fields`);
    }
    for (const ours of ['shard', 'runtime', 'launcher']) assert.equal(t[ours], undefined, `${name}: no [${ours}]`);
    assert.equal(t.checkpoint!.keep, undefined);
    assert.equal(t.model!.num_layers, undefined);
    assert.equal(t.optimizer!.warmup_steps, undefined, 'warmup_steps moved to [training]');

    assert.equal(t.job!.exp_name, c.job.exp_name);
    assert.equal(t.job!.dump_folder, path.resolve('/work', c.job.dump_folder), 'absolute, as it requires');
    assert.equal(t.job!.seed, 5, 'training.seed is its job.seed');
    assert.equal(t.model!.video_length, c.model.video_length);
    assert.equal(t.model!.ssm_layer, 'ttt_mlp');
    assert.equal(t.model!.scale_factor, c.training.vae_scale_factor);
    assert.equal(t.training!.adapter_method, c.model.adapter_method);
    assert.equal(t.training!.warmup_steps, c.optimizer.warmup_steps);
    assert.equal(t.training!.steps, c.training.steps);
    assert.deepEqual(
      t.training!.jsonl_paths,
      c.training.jsonl_paths.map((j) => path.resolve('/work', c.training.dataset_path, j)),
      'it opens jsonl_paths as given: written absolute',
    );
    assert.equal(t.checkpoint!.init_state_dir, '/weights/cogvideox-5b-ttt');
    assert.equal(t.checkpoint!.interval, c.checkpoint.interval);
    assert.equal(t.checkpoint!.resume, undefined, 'nothing about resuming unless asked');
    assert.deepEqual(
      { ...t.parallelism },
      {
        fsdp_unsharded_dtype: c.parallelism.fsdp_unsharded_dtype,
        tp_sharding: c.parallelism.tp_sharding,
        dp_sharding: c.parallelism.dp_sharding,
        dp_replicate: c.parallelism.dp_replicate,
      },
    );
    assert.deepEqual({ ...t.remat }, c.remat);
    // Its float fields stay floats, its int fields ints (Python's range() refuses 5000.0).
    assert.match(text, /^scale_factor = 1\.0$/m);
    assert.match(text, new RegExp(`^steps = ${c.training.steps}$`, 'm'));
  }
  // No init weights: no init_state_dir line (its default, None).
  const fresh = parseToml(tttVideoDitToml(paperStage('3s', { 'checkpoint.init_state_dir': '' }))) as Record<
    string,
    Record<string, unknown>
  >;
  assert.equal(fresh.checkpoint!.init_state_dir, undefined);
});

test('the config file tells TTT-Video-DiT which step to resume from, so that it never picks a torn one itself', () => {
  const c = paperStage('9s');
  const at = parseToml(tttVideoDitToml(c, { resumeFrom: { step: 500, dir: '/runs/x/checkpoint/step-500' } })) as {
    checkpoint: Record<string, unknown>;
  };
  assert.equal(at.checkpoint.resume, true);
  assert.equal(at.checkpoint.resume_step, 500);
  const none = parseToml(tttVideoDitToml(c, { resumeFrom: null })) as { checkpoint: Record<string, unknown> };
  assert.equal(none.checkpoint.resume, false, 'no complete checkpoint: start from init_state_dir');
  assert.equal(none.checkpoint.resume_step, undefined);
});

test('settings TTT-Video-DiT cannot honour are a ConfigError naming each field', () => {
  assert.deepEqual(tttVideoDitProblems(paperStage('3s')), []);
  const tiny = loadStageConfig(path.join(ROOT, 'configs/train/tiny/3s.toml')).config;
  const fields = tttVideoDitProblems(tiny).map((p) => p.field);
  assert.deepEqual(fields, ['training.dataset_path', 'model.size']);
  const odd = paperStage('3s', {
    'optimizer.lr_schedule': 'constant',
    'optimizer.beta2': 0.999,
    'model.num_layers': 12,
  });
  assert.throws(
    () => tttVideoDitToml(odd, { file: 'ttt-mlp/3s.toml' }),
    (e: unknown) =>
      e instanceof ConfigError &&
      e.problems.map((p) => p.field).join(' ') === 'optimizer.lr_schedule optimizer.beta2 model.num_layers' &&
      /ttt-mlp\/3s\.toml: optimizer\.beta2 = 0\.999: TTT-Video-DiT fixes it at 0\.95/.test(e.message),
  );
});

test("TTT-Video-DiT's progress lines parse: step, loss and grad norm, with or without torchrun's prefix", () => {
  const metrics = 'loss: 0.12345678, lr: 0.00001000, dataloader time: 0.00123456, grad_norm: 0.05432100';
  const timing = '<s/iter: 41.23s | est: 2 days, 7:50:00>';
  const cases: [string, ReturnType<typeof parseProgressLine>][] = [
    [
      `2025-03-01 12:00:00,000 - root - INFO - cogvideo-mlp-3s: Steps 120/5000 | ${timing} | Metrics: ${metrics}`,
      { step: 120, loss: 0.12345678, gradNorm: 0.054321 },
    ],
    [
      `[default0]:2025-03-01 12:00:00,000 - root - INFO - cogvideo-mlp-3s: Steps 7/5000 | ${timing} | Metrics: ${metrics}`,
      { step: 7, loss: 0.12345678, gradNorm: 0.054321 },
    ],
    // log.txt has the message alone; the first line of a run has no metrics yet.
    [`cogvideo-mlp-3s: Steps 4500/5000 | Metrics: ${metrics}`, { step: 4500, loss: 0.12345678, gradNorm: 0.054321 }],
    ['2025-03-01 12:00:00,000 - root - INFO - cogvideo-mlp-3s: Steps 0/5000', { step: 0, loss: null, gradNorm: null }],
    ['Steps 500/5000 | <s/iter: 3.00s | est: 1:00:00>', { step: 500, loss: null, gradNorm: null }],
    [
      'x: Steps 9/10 | Metrics: loss: nan, lr: 0.00001000, dataloader time: 0.00000100, grad_norm: inf',
      { step: 9, loss: Number.NaN, gradNorm: Number.POSITIVE_INFINITY },
    ],
    ['x: Steps 9/10 | Metrics: loss: 1.5e-05, lr: 0.1', { step: 9, loss: 1.5e-5, gradNorm: null }],
    // Not progress.
    ['2025-03-01 12:00:00,000 - root - INFO - Checkpointing at step 500.', null],
    ['2025-03-01 12:00:00,000 - root - INFO - cogvideo-mlp-3s: Completed 5000 steps in 3600.00s!', null],
    ['', null],
  ];
  for (const [line, want] of cases) assert.deepEqual(parseProgressLine(line), want, line);
  assert.deepEqual(parseProgressLine(cases[0]![0], TTT_VIDEO_DIT_PROGRESS_PATTERN), cases[0]![1]);
});

test('a progress pattern of its own: named groups from text, checked; loss and grad_norm optional', () => {
  const custom = String.raw`step=(?<step>\d+) loss=(?<loss>\S+)`;
  assert.deepEqual(parseProgressLine('iter step=12 loss=0.5 other', custom), { step: 12, loss: 0.5, gradNorm: null });
  assert.equal(parseProgressLine('iter step=x loss=0.5', custom), null);
  const g = /step (?<step>\d+) gn (?<grad_norm>[\d.]+)/g;
  assert.deepEqual(parseProgressLine('step 3 gn 1.25', g), { step: 3, loss: null, gradNorm: 1.25 });
  assert.deepEqual(parseProgressLine('step 4 gn 2', g), { step: 4, loss: null, gradNorm: 2 }, 'no lastIndex carried');
  assert.throws(() => compileProgressPattern('loss=(?<loss>\\S+)'), /no named group `step`/);
  assert.throws(() => compileProgressPattern('(?<step>\\d+', 'configs/engine/x.toml'), /x\.toml: progress_pattern/);
  assert.ok(compileProgressPattern(TTT_VIDEO_DIT_PROGRESS_PATTERN.source) instanceof RegExp);
});
