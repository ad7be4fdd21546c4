/** The `train` and `dataset synth` commands, and the helpers the commands share. */
import assert from 'node:assert/strict';
import { execFileSync, spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { test } from 'node:test';
import { latestCompleteCheckpoint } from '../../src/checkpoint/store';
import { overridesFrom, parseSize, resultTable } from '../../src/cli/common';
import { stageLine } from '../../src/cli/commands/status';
import type { CurriculumResult } from '../../src/shared/types';
import { CLI, ROOT, metricSteps, tmpDir } from '../helpers';

function train(args: string[]): string {
  return execFileSync(process.execPath, [CLI, 'train', ...args], {
    cwd: ROOT,
    encoding: 'utf8',
    env: { ...process.env, TTT_LOG_LEVEL: 'warn' },
  });
}

test('train resumes from the latest complete checkpoint of the same job.exp_name', () => {
  const dump = tmpDir('train-cli');
  const common = [
    'configs/train/tiny/3s.toml',
    `--job.dump_folder=${dump}`,
    '--job.exp_name=resume-me',
    '--training.steps=6',
    '--checkpoint.interval',
    '2',
    '--training.global_batch_size=1',
  ];
  const first = train([...common, '--max-steps', '3']);
  assert.match(first, /3s: steps 0->3 of 6/);
  const ck = path.join(dump, 'resume-me', '3s', 'checkpoints');
  assert.equal(latestCompleteCheckpoint(ck)?.state.step, 3);
  const second = train(common);
  assert.match(second, /3s: steps 3->6 of 6 \(stage complete\)/);
  assert.deepEqual(metricSteps(path.join(dump, 'resume-me', '3s')), [1, 2, 3, 4, 5, 6]);
  const third = train(common);
  assert.match(third, /3s: steps 6->6 of 6 \(stage complete\)/, 'a finished stage trains no more');
});

test("train takes TTT-Video-DiT's command line: --job.config_file <file>, --job.exp_name <name>, --wandb.disable", () => {
  const dump = tmpDir('train-ttt-cli');
  // As in TTT-Video-DiT's scripts/train_singlenode.sh, with only the program name changed.
  const out = train([
    '--wandb.disable',
    '--job.config_file',
    'configs/train/tiny/3s.toml',
    '--job.exp_name=ttt-style',
    `--job.dump_folder=${dump}`,
    '--training.global_batch_size=1',
    '--training.steps=2',
  ]);
  assert.match(out, /3s: steps 0->2 of 2 \(stage complete\)/);
  assert.deepEqual(metricSteps(path.join(dump, 'ttt-style', '3s')), [1, 2]);
  assert.equal(latestCompleteCheckpoint(path.join(dump, 'ttt-style', '3s', 'checkpoints'))?.state.step, 2);
});

test('train refuses two different stage configs and a missing one, with the fix', () => {
  const run = (args: string[]) =>
    spawnSync(process.execPath, [CLI, 'train', ...args], { cwd: ROOT, encoding: 'utf8', stdio: 'pipe' });
  const two = run(['configs/train/tiny/3s.toml', '--job.config_file', 'configs/train/tiny/9s.toml']);
  assert.equal(two.status, 1);
  assert.match(two.stderr, /two stage configs: configs\/train\/tiny\/3s\.toml and --job\.config_file .*9s\.toml/);
  const none = run(['--training.steps=2']);
  assert.equal(none.status, 1);
  assert.match(
    none.stderr,
    /no stage config\. Fix: write `train configs\/train\/tiny\/3s\.toml` or `train --job\.config_file/,
  );
});

test('train reports a bad config on stderr with the fix and exits 1', () => {
  let err: { status: number; stderr: string } | undefined;
  try {
    execFileSync(process.execPath, [CLI, 'train', 'configs/train/tiny/3s.toml', '--training.stepz=5'], {
      cwd: ROOT,
      encoding: 'utf8',
      stdio: 'pipe',
    });
  } catch (e) {
    err = e as { status: number; stderr: string };
  }
  assert.ok(err, 'the command failed');
  assert.equal(err.status, 1);
  assert.match(
    err.stderr,
    /error: .*3s\.toml: training\.stepz = 5: unknown field\. Fix: remove it or check its spelling/,
  );
});

test('dataset synth writes the synthetic source as a JSONL dataset and says how to use it', () => {
  const out = path.join(tmpDir('synth-cli'), 'data');
  const text = execFileSync(
    process.execPath,
    [CLI, 'dataset', 'synth', '--out', out, '--video-length', '3sec', '--samples', '2'],
    { cwd: ROOT, encoding: 'utf8', env: { ...process.env, TTT_LOG_LEVEL: 'warn' } },
  );
  assert.match(text, /^wrote 2 3sec samples: .*\.jsonl\nuse: --training\.dataset_path=/);
  const jsonl = fs.readdirSync(out).find((f) => f.endsWith('.jsonl'))!;
  const lines = fs
    .readFileSync(path.join(out, jsonl), 'utf8')
    .split('\n')
    .filter(Boolean)
    .map((l) => JSON.parse(l) as { vid_emb: string; text_chunk_emb: string[] });
  assert.equal(lines.length, 2);
  for (const l of lines)
    for (const f of [l.vid_emb, ...l.text_chunk_emb]) assert.ok(fs.existsSync(path.join(out, f)), f);
});

test('the shared CLI helpers: --set overrides, sizes, the result table and the status lines', () => {
  assert.deepEqual(overridesFrom(['a.b=1', 'c.d=x=y'], { 'e.f': '2' }), { 'e.f': '2', 'a.b': '1', 'c.d': 'x=y' });
  assert.throws(() => overridesFrom(['a.b'], {}), /--set a\.b: write --set section\.field=value/);
  assert.equal(parseSize('5GB'), 5e9);
  assert.equal(parseSize('1.5 GiB'), Math.floor(1.5 * 1024 ** 3));
  assert.equal(parseSize('500'), 500);
  assert.throws(() => parseSize('0MB'), /size "0MB" is not a positive size/);
  const stage = { modelSha256: 'x', firstLoss: null, lastLoss: null };
  const result: CurriculumResult = {
    jobName: 'j',
    curriculum: path.join(ROOT, 'configs/curriculum/tiny.toml'),
    until: '18s',
    stages: [
      {
        ...stage,
        stage: '3s',
        steps: 4,
        firstLoss: 1.5,
        lastLoss: 0.25,
        valLossStart: 1.0,
        valLossEnd: 0.5,
        wallSeconds: 3.25,
        finalCheckpoint: '/j/3s',
      },
      {
        ...stage,
        stage: '9s',
        steps: 12,
        valLossStart: 0.5033,
        valLossEnd: 0.50319,
        wallSeconds: 10,
        finalCheckpoint: '/j/9s',
      },
      // A stage of an older worker: no validation fields.
      { ...stage, stage: '18s', steps: 8, wallSeconds: 1, finalCheckpoint: '/j/18s' },
    ],
  };
  const table = resultTable(result, ROOT);
  assert.equal(
    table,
    [
      '',
      'Job j (configs/curriculum/tiny.toml) finished through stage 18s:',
      'stage  steps  first loss  last loss  val start  val end  val change  wall s  final checkpoint',
      '3s     4      1.5000      0.2500     1.0000     0.5000   -50.00%     3.3     /j/3s',
      '9s     12     -           -          0.5033     0.5032   -0.02%      10.0    /j/9s',
      '18s    8      -           -          -          -        -           1.0     /j/18s',
      '',
    ].join('\n'),
  );
  const line = {
    stage: '9s',
    step: 5,
    totalSteps: 12,
    done: false,
    loss: 0.5,
    valLoss: null,
    valStep: null,
    valLossStart: null,
    finalCheckpoint: null,
  };
  assert.equal(
    stageLine({ ...line, stepsPerSecond: 2, etaSeconds: 3.5 }),
    '  9s        5/12      loss 0.5000  2.00 steps/s  ETA 4s',
  );
  assert.equal(
    stageLine({ ...line, valLoss: 0.41234, valStep: 4, stepsPerSecond: 2, etaSeconds: 3.5 }),
    '  9s        5/12      loss 0.5000  val loss 0.4123 at step 4  2.00 steps/s  ETA 4s',
  );
  assert.equal(
    stageLine({ ...line, done: true, loss: null, stepsPerSecond: null, etaSeconds: null }),
    '  9s        5/12 done ',
  );
  assert.equal(
    stageLine({
      ...line,
      step: 12,
      done: true,
      valLoss: 0.5,
      valStep: 12,
      valLossStart: 0.75,
      stepsPerSecond: null,
      etaSeconds: null,
    }),
    '  9s       12/12 done loss 0.5000  val loss 0.7500 -> 0.5000',
  );
});
