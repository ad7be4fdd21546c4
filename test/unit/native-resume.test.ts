/**
 * Crash safety on the native backend: a stage trained straight and the same stage trained in two
 * processes (stopped after k steps, resumed from the checkpoint in a fresh process) end with
 * byte-identical weights and optimizer state on tensorflow, and the shard says it ran there.
 */
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { test } from 'node:test';
import { CLI, ROOT, tmpDir } from '../helpers';
import { nativeSkip } from '../native';

test('bit-exact resume on the tensorflow backend: 6 steps straight equal 4 steps + resume in a fresh process', (t) => {
  const skip = nativeSkip();
  if (skip) return t.skip(skip);
  const dump = tmpDir('native-bitexact');
  const run = (name: string, extra: string[] = []): string =>
    execFileSync(
      process.execPath,
      [
        CLI,
        'train',
        'configs/train/tiny/3s.toml',
        `--job.dump_folder=${dump}`,
        `--job.exp_name=${name}`,
        '--training.steps=6',
        '--checkpoint.interval=3',
        '--runtime.backend=tensorflow',
        ...extra,
      ],
      { cwd: ROOT, env: { ...process.env, TTT_LOG_LEVEL: 'warn' }, stdio: 'pipe', encoding: 'utf8' },
    );
  const outs = [run('straight'), run('resumed', ['--max-steps', '4']), run('resumed')];
  for (const out of outs) assert.match(out, / on tensorflow \((cpu: .+, \d+ threads?|gpu: .+)\)\n/, out);
  for (const f of ['model.safetensors', 'optimizer.safetensors']) {
    const a = fs.readFileSync(path.join(dump, 'straight', '3s', 'checkpoints', 'step-00000006', f));
    const b = fs.readFileSync(path.join(dump, 'resumed', '3s', 'checkpoints', 'step-00000006', f));
    assert.ok(a.equals(b), `${f}: byte-identical`);
  }
  fs.rmSync(dump, { recursive: true, force: true });
});
