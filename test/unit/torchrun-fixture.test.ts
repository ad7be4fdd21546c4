/**
 * test/fixtures/ddp_train.py as an external trainer under a real torchrun: 2 CPU processes,
 * DistributedDataParallel on gloo (issue 14). It gets our stage config written as a TTT-Video-DiT
 * config file (tttVideoDitToml) and TTT-Video-DiT's command line; its log lines are read with
 * the default progress pattern; its checkpoints are ours (src/checkpoint/store.ts reads them).
 * Python: scripts/ensure-torch.sh's (Debian's torch 1.13 + safetensors), whose launcher on
 * Python 3.11 needs --redirects 1 --tee 1. Assertions are on files and log lines, never on time.
 */
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import * as fs from 'node:fs';
import * as path from 'node:path';
import * as readline from 'node:readline';
import { test } from 'node:test';
import { latestCompleteCheckpoint, listCheckpoints, verifyCheckpoint, weightsHash } from '../../src/checkpoint/store';
import { loadStageConfig } from '../../src/config/load';
import { parseProgressLine } from '../../src/engine/log-progress';
import { tttVideoDitToml } from '../../src/engine/ttt-video-dit/config';
import type { LogProgress } from '../../src/engine/types';
import { pythonWithTorch, ROOT, tmpDir } from '../helpers';

const FIXTURE = path.join(ROOT, 'test', 'fixtures', 'ddp_train.py');
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

/** Ranks' pids, from the fixture's "ddp_train: rank R pid P world W" lines. */
function rankPids(lines: string[]): Map<number, number> {
  const out = new Map<number, number>();
  for (const l of lines) {
    const m = /ddp_train: rank (\d+) pid (\d+) world (\d+)/.exec(l);
    if (m) out.set(Number(m[1]), Number(m[2]));
  }
  return out;
}

/**
 * The pid of rank `rank` of the run under `work`, from /proc (torchrun sets RANK in each rank's
 * environment): its "rank R pid P" line may reach torchrun's copied output after other ranks' lines.
 */
function rankPidOf(work: string, rank: number): number {
  for (const p of fs.readdirSync('/proc').filter((x) => /^\d+$/.test(x))) {
    try {
      const cmd = fs.readFileSync(`/proc/${p}/cmdline`, 'utf8');
      if (!cmd.includes(FIXTURE) || !cmd.includes(work)) continue;
      if (fs.readFileSync(`/proc/${p}/environ`, 'utf8').split('\0').includes(`RANK=${rank}`)) return Number(p);
    } catch {
      // gone
    }
  }
  throw new Error(`no rank ${rank} of the run under ${work}`);
}

/**
 * Runs the fixture under torchrun with 2 processes; `onLine` sees every line of its output as it
 * comes (torchrun --tee copies the ranks' output, each behind "[defaultR]:") with torchrun's pid.
 */
function torchrun(work: string, args: string[], onLine?: (line: string, lines: string[], pid: number) => void) {
  const logDir = fs.mkdtempSync(path.join(work, 'torchrun-logs-'));
  const launcher = ['-m', 'torch.distributed.run', '--standalone', '--nproc_per_node', '2'];
  const child = spawn(
    pythonWithTorch(),
    [...launcher, '--redirects', '1', '--tee', '1', '--log_dir', logDir, FIXTURE, ...args],
    { cwd: work, detached: true, stdio: ['ignore', 'pipe', 'pipe'], env: { ...process.env, OMP_NUM_THREADS: '1' } },
  );
  const lines: string[] = [];
  let stderr = '';
  child.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
  readline.createInterface({ input: child.stdout }).on('line', (l) => {
    lines.push(l);
    onLine?.(l, lines, child.pid!);
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

/** Our stage config (the paper's, made tiny) written out as TTT-Video-DiT's config file for the fixture. */
function stageToml(work: string, stage: '3s' | '9s', steps: number, init = ''): string {
  const c = loadStageConfig(
    path.join(ROOT, 'configs/train/ttt-mlp', `${stage}.toml`),
    {
      'job.exp_name': EXP,
      'job.dump_folder': path.join(work, 'runs'),
      'training.dataset_path': path.join(work, 'data'),
      'training.steps': steps,
      'training.global_batch_size': 4,
      'training.seed': 7,
      'checkpoint.interval': 4,
      'checkpoint.init_state_dir': init,
      'optimizer.lr': 0.01,
      'optimizer.gradient_clipping_norm': 1.0,
      'parallelism.dp_replicate': 1,
      'parallelism.dp_sharding': 2,
      'parallelism.tp_sharding': 1,
    },
    { checkPaths: false, devices: 2 },
  ).config;
  const file = path.join(work, `${stage}.toml`);
  // The fixture loads safetensors init weights (its checkpoints are ours), not DCP.
  fs.writeFileSync(file, tttVideoDitToml(c, { initMustBeDcp: false }));
  return file;
}

/** TTT-Video-DiT's command line: train.py --job.config_file F --job.exp_name N --job.dump_folder D --checkpoint.init_state_dir I. */
function tttArgs(work: string, config: string, init = '', extra: string[] = []): string[] {
  const initArgs = init === '' ? [] : ['--checkpoint.init_state_dir', init];
  const dump = path.join(work, 'runs');
  return ['--job.config_file', config, `--job.exp_name=${EXP}`, '--job.dump_folder', dump, ...initArgs, ...extra];
}

const checkpoints = (work: string, stage: string) => path.join(work, 'runs', EXP, stage, 'checkpoints');
const steps = (work: string, stage: string) => listCheckpoints(checkpoints(work, stage)).map((c) => c.step);
const progress = (lines: string[]) => lines.map((l) => parseProgressLine(l)).filter((p): p is LogProgress => !!p);
const modelSha = (dir: string) => {
  const v = verifyCheckpoint(dir);
  assert.ok(v.ok, `${dir} is a complete checkpoint`);
  return v.state.files['model.safetensors']!.sha256;
};
const ok = (r: Run, what: string) =>
  assert.equal(r.code, 0, `${what}: torchrun exits 0\n${r.lines.slice(-20).join('\n')}\n${r.stderr.slice(-3000)}`);

/** Stage 3s trained for 8 steps, then resumed to 12: the reference the interrupted runs must end at. */
let reference: Promise<{ work: string; final: string }> | undefined;
function referenceRun() {
  reference ??= (async () => {
    const work = tmpDir('torchrun-ref');
    const first = await torchrun(work, tttArgs(work, stageToml(work, '3s', 8)));
    ok(first, 'the first run');
    const pids = rankPids(first.lines);
    assert.deepEqual([...pids.keys()].sort(), [0, 1], 'two ranks');
    assert.notEqual(pids.get(0), pids.get(1), 'in two processes');
    assert.ok(first.lines.some((l) => l.includes('ddp_train: rank 1 pid') && l.includes('world 2')));
    const p = progress(first.lines);
    assert.deepEqual(
      p.map((x) => x.step),
      [0, 1, 2, 3, 4, 5, 6, 7, 8],
      'a progress line per step, read with the default pattern',
    );
    assert.equal(p[0]!.loss, null, 'the first line has no metrics yet');
    for (const x of p.slice(1)) assert.ok(Number.isFinite(x.loss) && Number.isFinite(x.gradNorm), 'loss, grad norm');
    assert.deepEqual(steps(work, '3s'), [8, 4], 'checkpoints every checkpoint.interval steps');

    const again = await torchrun(work, tttArgs(work, stageToml(work, '3s', 8), '', ['--training.steps=12']));
    ok(again, 'the resumed run');
    assert.ok(again.lines.some((l) => l.endsWith('Resuming experiment at step 8.')));
    assert.deepEqual(
      progress(again.lines).map((x) => x.step),
      [8, 9, 10, 11, 12],
    );
    const latest = latestCompleteCheckpoint(checkpoints(work, '3s'));
    assert.equal(latest?.state.step, 12);
    return { work, final: latest!.dir };
  })();
  return reference;
}

test('a stage trains under torchrun on 2 processes, resumes from its latest checkpoint, and hands off to the next', async () => {
  const { work, final } = await referenceRun();
  // Stage 9s starts from stage 3s's last complete checkpoint: in its config and on the command line.
  const b = await torchrun(work, tttArgs(work, stageToml(work, '9s', 4, final), final));
  ok(b, 'stage 9s');
  assert.ok(b.lines.some((l) => l.endsWith('No checkpoints found, starting from beginning.')));
  assert.ok(b.lines.some((l) => l.endsWith(`Loading in state from ${final}.`)));
  assert.deepEqual(steps(work, '9s'), [4]);
  const first9s = verifyCheckpoint(path.join(checkpoints(work, '9s'), 'step-00000004'));
  assert.ok(first9s.ok);
  assert.equal(first9s.state.initHash, weightsHash(final), "stage 9s's weights came from stage 3s's final");
  assert.equal(first9s.state.stage, '9s');
});

test('one rank SIGKILLed: torchrun fails, and the next run resumes from the last complete checkpoint', async () => {
  const work = tmpDir('torchrun-kill');
  const config = stageToml(work, '3s', 12);
  let killed = 0;
  const crashed = await torchrun(work, tttArgs(work, config, '', ['--fixture.hold_at_step=6']), (line) => {
    if (line.endsWith('Holding at step 6 (--fixture.hold_at_step).')) {
      killed = rankPidOf(work, 1);
      process.kill(killed, 'SIGKILL');
    }
  });
  assert.ok(killed > 0, 'rank 1 was killed at step 6');
  assert.notEqual(crashed.code, 0, 'torchrun fails');
  assert.match(crashed.stderr, /Signal 9 \(SIGKILL\) received by PID/, "torchrun's report names the killed rank");
  assert.deepEqual(steps(work, '3s'), [4], 'step 4 was the last complete checkpoint; nothing of step 6');

  const resumed = await torchrun(work, tttArgs(work, config));
  ok(resumed, 'the next run');
  assert.ok(resumed.lines.some((l) => l.endsWith('Resuming experiment at step 4.')));
  assert.equal(progress(resumed.lines)[0]!.step, 4);
  const final = latestCompleteCheckpoint(checkpoints(work, '3s'));
  assert.equal(final?.state.step, 12);
  // Bit-exact resume: the same weights as the run that stopped cleanly at 8 and went on to 12.
  assert.equal(modelSha(final!.dir), modelSha((await referenceRun()).final));
});

test('a stop signal to one rank (SIGUSR1) or to torchrun (SIGTERM): the ranks save the step they are at', async () => {
  const one = tmpDir('torchrun-usr1');
  const usr1 = await torchrun(one, tttArgs(one, stageToml(one, '3s', 12), '', ['--fixture.hold_at_step=6']), (l) => {
    if (l.endsWith('Holding at step 6 (--fixture.hold_at_step).')) process.kill(rankPidOf(one, 1), 'SIGUSR1');
  });
  ok(usr1, 'SIGUSR1 to rank 1');
  assert.ok(usr1.lines.some((l) => l.endsWith('Stopping at step 6 on a signal.')));
  assert.deepEqual(steps(one, '3s'), [6, 4], 'step 6 saved on the signal');

  const agent = tmpDir('torchrun-term');
  const term = await torchrun(
    agent,
    tttArgs(agent, stageToml(agent, '3s', 12), '', ['--fixture.hold_at_step=6']),
    (l, _, pid) => {
      if (l.endsWith('Holding at step 6 (--fixture.hold_at_step).')) process.kill(pid, 'SIGTERM');
    },
  );
  // torch 1.13's torchrun passes SIGTERM on to the ranks and then exits non-zero itself
  // (SignalException); only the checkpoint tells whether the ranks stopped cleanly.
  assert.ok(
    rankLog(term, 0).some((l) => l.endsWith('Stopping at step 6 on a signal.')),
    term.stderr.slice(-2000),
  );
  assert.deepEqual(steps(agent, '3s'), [6, 4], 'step 6 saved after torchrun got SIGTERM');
});
