/** The `train` command: one stage locally, auto-resuming from the latest checkpoint of job.exp_name. */
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { test } from 'node:test';
import { latestCompleteCheckpoint } from '../../src/checkpoint/store';
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
