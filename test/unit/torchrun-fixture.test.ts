/**
 * test/fixtures/ddp_train.py's stop signals under a real torchrun: 2 CPU processes,
 * DistributedDataParallel on gloo (issue 14). It gets our stage config written as a TTT-Video-DiT
 * config file (tttVideoDitToml, for a trainer other than train.py) and TTT-Video-DiT's command
 * line; its checkpoints are ours (src/checkpoint/store.ts reads them). Python:
 * scripts/ensure-torch.sh's (Debian's torch 1.13 + safetensors), whose launcher on Python 3.11
 * needs --redirects 1 --tee 1. Assertions are on files and log lines, never on time.
 *
 * The fixture as an engine preset under the workflow's engine runner (a curriculum's stages, each
 * handing off to the next, progress from its log lines; one rank SIGKILLed, the activity retried
 * and the stage resumed from its last complete checkpoint, bit-exact):
 * test/integration/torchrun-engine.test.ts. Here only what that does not exercise: a stop signal to
 * one rank or to torchrun makes the ranks save the step they are at.
 */
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import * as fs from 'node:fs';
import * as path from 'node:path';
import * as readline from 'node:readline';
import { test } from 'node:test';
import { listCheckpoints } from '../../src/checkpoint/store';
import { loadStageConfig } from '../../src/config/load';
import { tttVideoDitToml } from '../../src/engine/ttt-video-dit/config';
import { DDP_FIXTURE, ddpRankPid, pythonWithTorch, ROOT, tmpDir } from '../helpers';

const EXP = 'ddp';

interface Run {
  code: number | null;
  lines: string[];
  stderr: string;
  /** torchrun's --log_dir: with --redirects, each rank's own stdout.log is under it. */
  logDir: string;
}

/** What rank `rank` wrote to its stdout, from its log file (complete even where torchrun stopped copying it). */
function rankLog(r: Run, rank: number): string[] {
  const file = (fs.readdirSync(r.logDir, { recursive: true }) as string[]).find((f) =>
    f.endsWith(path.join(String(rank), 'stdout.log')),
  );
  assert.ok(file, `rank ${rank}'s stdout.log under ${r.logDir}`);
  return fs.readFileSync(path.join(r.logDir, file), 'utf8').split('\n');
}

/**
 * Runs the fixture under torchrun with 2 processes; `onLine` sees every line of its output as it
 * comes (torchrun --tee copies the ranks' output, each behind "[defaultR]:") with torchrun's pid.
 */
function torchrun(work: string, args: string[], onLine?: (line: string, pid: number) => void) {
  const logDir = fs.mkdtempSync(path.join(work, 'torchrun-logs-'));
  const launcher = ['-m', 'torch.distributed.run', '--standalone', '--nproc_per_node', '2'];
  const child = spawn(
    pythonWithTorch(),
    [...launcher, '--redirects', '1', '--tee', '1', '--log_dir', logDir, DDP_FIXTURE, ...args],
    { cwd: work, detached: true, stdio: ['ignore', 'pipe', 'pipe'], env: { ...process.env, OMP_NUM_THREADS: '1' } },
  );
  const lines: string[] = [];
  let stderr = '';
  child.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
  readline.createInterface({ input: child.stdout }).on('line', (l) => {
    lines.push(l);
    onLine?.(l, child.pid!);
  });
  // Only a guard against a hung run, so that no process outlives the test: nothing is timed.
  const guard = setTimeout(() => process.kill(-child.pid!, 'SIGKILL'), 300_000);
  return new Promise<Run>((resolve) =>
    child.on('close', (code) => {
      clearTimeout(guard);
      resolve({ code, lines, stderr, logDir });
    }),
  );
}

/**
 * Our stage config (the paper's 3s, made tiny) written out as TTT-Video-DiT's config file for the
 * fixture, with TTT-Video-DiT's command line: train.py --job.config_file F --job.exp_name N
 * --job.dump_folder D, then `extra`.
 */
function fixtureArgs(work: string, steps: number, extra: string[]): string[] {
  const c = loadStageConfig(
    path.join(ROOT, 'configs/train/ttt-mlp/3s.toml'),
    {
      'job.exp_name': EXP,
      'job.dump_folder': path.join(work, 'runs'),
      'training.dataset_path': path.join(work, 'data'),
      'training.steps': steps,
      'training.global_batch_size': 4,
      'training.seed': 7,
      'checkpoint.interval': 4,
      'checkpoint.init_state_dir': '',
      'optimizer.lr': 0.01,
      'optimizer.gradient_clipping_norm': 1.0,
      'parallelism.dp_replicate': 1,
      'parallelism.dp_sharding': 2,
      'parallelism.tp_sharding': 1,
    },
    { checkPaths: false, devices: 2 },
  ).config;
  const config = path.join(work, '3s.toml');
  // The fixture is not train.py: it loads safetensors init weights (its checkpoints are ours).
  fs.writeFileSync(config, tttVideoDitToml(c, { trainPy: false }));
  const dump = path.join(work, 'runs');
  return ['--job.config_file', config, `--job.exp_name=${EXP}`, '--job.dump_folder', dump, ...extra];
}

const steps = (work: string) => listCheckpoints(path.join(work, 'runs', EXP, '3s', 'checkpoints')).map((c) => c.step);
const ok = (r: Run, what: string) =>
  assert.equal(r.code, 0, `${what}: torchrun exits 0\n${r.lines.slice(-20).join('\n')}\n${r.stderr.slice(-3000)}`);

test('a stop signal to one rank (SIGUSR1) or to torchrun (SIGTERM): the ranks save the step they are at', async () => {
  const hold = ['--fixture.hold_at_step=6'];
  const one = tmpDir('torchrun-usr1');
  const usr1 = await torchrun(one, fixtureArgs(one, 12, hold), (l) => {
    if (l.endsWith('Holding at step 6 (--fixture.hold_at_step).')) process.kill(ddpRankPid(one, 1), 'SIGUSR1');
  });
  ok(usr1, 'SIGUSR1 to rank 1');
  assert.ok(usr1.lines.some((l) => l.endsWith('Stopping at step 6 on a signal.')));
  assert.deepEqual(steps(one), [6, 4], 'step 6 saved on the signal');

  const agent = tmpDir('torchrun-term');
  const term = await torchrun(agent, fixtureArgs(agent, 12, hold), (l, pid) => {
    if (l.endsWith('Holding at step 6 (--fixture.hold_at_step).')) process.kill(pid, 'SIGTERM');
  });
  // torch 1.13's torchrun passes SIGTERM on to the ranks and then exits non-zero itself
  // (SignalException); only the checkpoint tells whether the ranks stopped cleanly.
  assert.ok(
    rankLog(term, 0).some((l) => l.endsWith('Stopping at step 6 on a signal.')),
    term.stderr.slice(-2000),
  );
  assert.deepEqual(steps(agent), [6, 4], 'step 6 saved after torchrun got SIGTERM');
});
