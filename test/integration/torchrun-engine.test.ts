/**
 * A real torchrun as the external engine of the workflow (issue 14): a worker-side preset runs
 * test/fixtures/ddp_train.py (PyTorch DDP on 2 CPU processes with gloo; TTT-Video-DiT's command
 * line, config file and log lines; checkpoints of ours) under torch.distributed.run, through the
 * engine runner, with a real dev server and worker.
 *
 *   - the tiny curriculum: every stage completes and hands its final to the next; progress, read
 *     from the log lines with TTT-Video-DiT's pattern (progress_pattern = "ttt-video-dit"), reaches
 *     the workflow;
 *   - one rank SIGKILLed mid-stage: torchrun fails, trainShard is retried, the stage resumes from
 *     its last complete checkpoint and ends byte-identical to the uninterrupted run;
 *   - fenced: the engine runner holds the stage's lease for the fixture (which knows nothing of
 *     leases, though its layout is ours); a newer writer takes the stage mid-run, the runner kills
 *     torchrun and its ranks, trainShard is retried and the stage ends byte-identical.
 *
 * The preset: checkpoint_layout = "ours" (the fixture writes our checkpoints) with config_format =
 * "ttt-video-dit" (it reads TTT-Video-DiT's config file); torchrun's --log_dir in the test's
 * folder (else each run leaves a /tmp/torchelastic_* folder). Python: pythonWithTorch() (Debian's
 * torch 1.13, whose launcher on Python 3.11 needs --redirects 1 --tee 1). Assertions are on history
 * events, files and metrics lines, never on time. The fixture's stop signals: the unit test
 * test/unit/torchrun-fixture.test.ts.
 */
import assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { test } from 'node:test';
import type { temporal } from '@temporalio/proto';
import { stringify } from 'smol-toml';
import { Lease } from '../../src/checkpoint/lease';
import { verifyCheckpoint, weightsHash } from '../../src/checkpoint/store';
import { StageEngineFiles } from '../../src/engine/files';
import { parseProgressLine } from '../../src/engine/log-progress';
import type { CurriculumResult } from '../../src/shared/types';
import { startJob } from '../../src/temporal/client';
import {
  DDP_FIXTURE,
  ddpRankPid,
  eventTypeName,
  historyEvents,
  metricSteps,
  progressSignals,
  pythonWithTorch,
  sha256File,
  sharedServer,
  tmpDir,
  waitFor,
} from '../helpers';

const STAGES = ['3s', '9s', '18s', '30s', '63s'];
const STEPS = 8;
const HOLD = 6;
const HOLD_LINE = `Holding at step ${HOLD} (--fixture.hold_at_step).`;

const presetDir = tmpDir('torchrun-presets');
/** torchrun's --log_dir: a folder per run (its ranks' output), here rather than in /tmp. */
const TORCH_LOGS = path.join(presetDir, 'torchelastic');

/** Worker-side presets: the fixture under torchrun, and the same holding once at step HOLD (for the kill and the fence). */
function writePresets(dir: string): string {
  const torchrun = [
    ...[pythonWithTorch(), '-m', 'torch.distributed.run', '--standalone', '--nnodes=1'],
    ...['--log_dir', TORCH_LOGS],
  ];
  const command = [
    ...[...torchrun, '--nproc_per_node={gpus_per_node}', '--redirects', '1', '--tee', '1', DDP_FIXTURE],
    ...['--job.config_file', '{config}', '--job.exp_name', '{exp_name}', '--job.dump_folder', '{dump_folder}'],
    '--checkpoint.init_state_dir={init}',
  ];
  const preset = {
    kind: 'command',
    description: 'test/fixtures/ddp_train.py under torchrun, 2 CPU processes',
    command,
    checkpoint_layout: 'ours',
    config_format: 'ttt-video-dit',
    gpus_per_node: 2,
    env: { OMP_NUM_THREADS: '1' },
    // Its checkpoints are ours, its progress is in its log lines (it writes no metrics.jsonl), as TTT-Video-DiT's.
    progress_pattern: 'ttt-video-dit',
    stop: 'kill',
  };
  fs.writeFileSync(path.join(dir, 'ddp.toml'), stringify(preset));
  // {dump_folder}/{exp_name} is the job's folder (layout "ours"): the retried run finds the marker and does not hold.
  const hold = [`--fixture.hold_at_step=${HOLD}`, '--fixture.hold_marker={dump_folder}/{exp_name}/held-once'];
  fs.writeFileSync(path.join(dir, 'ddp-hold.toml'), stringify({ ...preset, command: [...command, ...hold] }));
  return dir;
}

const env = sharedServer('torchrun-engine', 'torchrun-engine', ['--engine-dir', writePresets(presetDir)]);

function input(jobName: string, preset: string, until: string) {
  return {
    jobName,
    curriculum: 'configs/curriculum/tiny.toml',
    until,
    set: {
      'engine.preset': preset,
      'job.dump_folder': env.runs,
      'training.steps': STEPS,
      'training.global_batch_size': 2,
      'checkpoint.interval': 4,
      // The mesh: 2 data-parallel processes (gpus_per_node of the preset, on the local launcher's one node).
      'parallelism.dp_replicate': 1,
      'parallelism.dp_sharding': 2,
      'parallelism.tp_sharding': 1,
      'shard.progress_seconds': 0.5,
      // One shard per attempt whatever the machine's speed: the runs of each stage are counted.
      'shard.max_seconds': 600,
    },
  };
}

const stageDir = (job: string, stage: string): string => path.join(env.runs, job, stage);
const readText = (file: string): string => (fs.existsSync(file) ? fs.readFileSync(file, 'utf8') : '');

/** The trainer's output under the local launcher, one entry per run (each begins with the runner's "--- " line). */
function outputRuns(job: string, stage: string): string[][] {
  const runs: string[][] = [];
  for (const l of readText(path.join(stageDir(job, stage), 'engine', 'output.log')).split('\n')) {
    if (l.startsWith('--- ')) runs.push([]);
    else runs.at(-1)?.push(l);
  }
  return runs;
}

const progressSteps = (lines: string[]): number[] =>
  lines.flatMap((l) => {
    const p = parseProgressLine(l);
    return p ? [p.step] : [];
  });

const runsLog = (job: string, stage: string) => new StageEngineFiles(stageDir(job, stage)).recordedRuns();

const modelSha = (dir: string): string => sha256File(path.join(dir, 'model.safetensors'));

/** The uninterrupted run, shared: the curriculum test checks it, the kill test compares with its 3s final. */
let uninterrupted: Promise<{ result: CurriculumResult; seconds: number }> | undefined;
function curriculum() {
  uninterrupted ??= (async () => {
    const t0 = Date.now();
    const h = await startJob(env.c, input('torchrun-tiny', 'ddp', STAGES.at(-1)!), { taskQueue: env.queue });
    const result = (await h.result()) as CurriculumResult;
    return { result, seconds: (Date.now() - t0) / 1000 };
  })();
  return uninterrupted;
}

test('the tiny curriculum with a torchrun engine (DDP, 2 gloo processes): every stage completes and hands its final to the next; progress from its log lines reaches the workflow', async (t) => {
  const job = 'torchrun-tiny';
  const { result, seconds } = await curriculum();
  assert.deepEqual(
    result.stages.map((s) => [s.stage, s.steps]),
    STAGES.map((s) => [s, STEPS]),
  );
  for (const [i, s] of result.stages.entries()) {
    const sDir = stageDir(job, s.stage);
    // Stage k+1 started from stage k's final: the fixture records the hash of the weights it loaded.
    assert.equal(s.finalCheckpoint, path.join(sDir, 'final'), 'promoted as a stage of ours');
    const v = verifyCheckpoint(s.finalCheckpoint);
    assert.ok(v.ok, `${s.stage}: the final verifies`);
    assert.equal(v.state.stage, s.stage);
    const init = i === 0 ? null : weightsHash(result.stages[i - 1]!.finalCheckpoint);
    assert.equal(v.state.initHash, init, `${s.stage}: ${i === 0 ? 'a fresh start' : 'init = the previous final'}`);
    assert.equal(s.modelSha256, modelSha(s.finalCheckpoint));
    // The stage config in TTT-Video-DiT's format (the fixture refuses a section it does not know).
    assert.ok(fs.existsSync(path.join(sDir, 'engine', 'config.ttt-video-dit.toml')));
    // One run of torchrun with two ranks in two processes; a progress line per step, the first without metrics.
    const runs = outputRuns(job, s.stage);
    assert.equal(runs.length, 1, `${s.stage}: one run`);
    const ranks = new Map(
      runs[0]!.flatMap((l) => {
        const m = /ddp_train: rank (\d+) pid (\d+) world 2$/.exec(l);
        return m ? [[Number(m[1]), Number(m[2])] as const] : [];
      }),
    );
    assert.deepEqual([...ranks.keys()].sort(), [0, 1], `${s.stage}: ranks 0 and 1 of a world of 2`);
    assert.notEqual(ranks.get(0), ranks.get(1), `${s.stage}: in two processes`);
    assert.deepEqual(
      progressSteps(runs[0]!),
      Array.from({ length: STEPS + 1 }, (_, k) => k),
    );
    assert.equal(parseProgressLine(runs[0]!.find((l) => parseProgressLine(l))!)!.loss, null);
    // The engine runner turned the log lines into the stage's metrics.jsonl.
    assert.deepEqual(
      metricSteps(sDir),
      Array.from({ length: STEPS }, (_, k) => k + 1),
    );
    assert.deepEqual(
      runsLog(job, s.stage).map((r) => [r.exit, r.startStep, r.endStep]),
      [['0', 0, STEPS]],
    );
  }
  // torchrun kept its logs in the test's folder (--log_dir), a folder per run, none in /tmp.
  assert.ok(fs.readdirSync(TORCH_LOGS).length >= STAGES.length, fs.readdirSync(TORCH_LOGS).join(' '));
  // Progress reached the workflow (shardProgress signals in its history), labelled with the engine.
  const signals = await progressSignals(env.c, job);
  assert.deepEqual([...new Set(signals.map((p) => p.stage))], STAGES, 'progress of every stage');
  for (const p of signals) {
    assert.equal(p.backend, 'ddp');
    assert.equal(p.device, '1 node x 2 devices');
    assert.ok(p.step >= 1 && p.step <= STEPS && Number.isFinite(p.loss), JSON.stringify(p));
  }
  t.diagnostic(
    `5 stages x ${STEPS} steps in ${seconds.toFixed(1)} s; finals ${result.stages.map((s) => `${s.stage} ${s.modelSha256.slice(0, 12)}`).join(', ')}`,
  );
});

/** trainShard's ActivityTaskStarted events (the attempt that completed or failed last, with the failure before it). */
function trainShardStarts(events: temporal.api.history.v1.IHistoryEvent[]) {
  const trainShard = new Set(
    events
      .filter((e) => e.activityTaskScheduledEventAttributes?.activityType?.name === 'trainShard')
      .map((e) => String(e.eventId)),
  );
  return events
    .filter((e) => eventTypeName(e) === 'EVENT_TYPE_ACTIVITY_TASK_STARTED')
    .map((e) => e.activityTaskStartedEventAttributes!)
    .filter((a) => trainShard.has(String(a.scheduledEventId)));
}

/** Starts stage 3s of `job` with the holding preset; resolves once its trainer holds at step HOLD. */
async function startHeld(job: string) {
  const h = await startJob(env.c, input(job, 'ddp-hold', '3s'), { taskQueue: env.queue });
  const output = path.join(stageDir(job, '3s'), 'engine', 'output.log');
  // A hang guard, not a speed claim.
  await waitFor(`"${HOLD_LINE}"`, () => (readText(output).includes(HOLD_LINE) ? true : undefined), 300_000, 100);
  return { h, output };
}

/** The activity failed once, retryably, with `message`; the attempt that completed is the second. */
async function assertRetriedOnce(job: string, message: RegExp): Promise<void> {
  const starts = trainShardStarts(await historyEvents(env.c, job));
  assert.deepEqual(
    starts.map((a) => a.attempt),
    [2],
    'one trainShard, completed at its second attempt',
  );
  const failure = starts[0]!.lastFailure;
  assert.match(failure?.message ?? '', message);
  assert.equal(failure?.applicationFailureInfo?.nonRetryable ?? false, false);
}

test("one rank SIGKILLed mid-stage: torchrun fails, trainShard is retried and resumes from the last complete checkpoint; the final is byte-identical to the uninterrupted run's", async (t) => {
  const job = 'torchrun-kill';
  const t0 = Date.now();
  const { h, output } = await startHeld(job);
  const rank1 = ddpRankPid(`${path.join(env.runs, job)}/`, 1);
  process.kill(rank1, 'SIGKILL');
  const result = (await h.result()) as CurriculumResult;
  assert.equal(result.stages[0]!.steps, STEPS);

  // torchrun failed: its report names the killed rank, and the runner recorded a run that ended non-zero.
  const [killed, resumed, ...more] = outputRuns(job, '3s');
  assert.ok(killed && resumed && more.length === 0, 'two runs of torchrun');
  assert.ok(
    killed.some((l) => l.includes(`Signal 9 (SIGKILL) received by PID ${rank1}`)),
    killed.slice(-30).join('\n'),
  );
  const runs = runsLog(job, '3s');
  assert.deepEqual(
    runs.map((r) => [r.startStep, r.endStep]),
    [
      [0, 4],
      [4, STEPS],
    ],
  );
  assert.notEqual(runs[0]!.exit, '0');
  assert.equal(runs[1]!.exit, '0');

  // The activity failed and was retried: the attempt that completed is the second, after the failure.
  await assertRetriedOnce(
    job,
    new RegExp(
      `engine ddp-hold exited with code ${runs[0]!.exit} at step ${HOLD}; the stage resumes from its latest complete checkpoint \\(step 4\\)`,
    ),
  );

  // It resumed from the last complete checkpoint (step 4), and did not hold again.
  assert.ok(resumed.some((l) => l.endsWith('Resuming experiment at step 4.')));
  assert.equal(progressSteps(resumed)[0], 4, "the retried run's first progress line is the checkpoint's step");
  assert.equal(readText(output).split(HOLD_LINE).length - 1, 1, 'held once');
  assert.deepEqual(metricSteps(stageDir(job, '3s')), [1, 2, 3, 4, 5, 6, 5, 6, 7, 8], 'steps 5 and 6 trained again');

  // Bit-exact: the same weights as the stage that was never interrupted.
  const reference = (await curriculum()).result.stages[0]!;
  assert.equal(modelSha(result.stages[0]!.finalCheckpoint), modelSha(reference.finalCheckpoint));
  assert.equal(result.stages[0]!.modelSha256, reference.modelSha256);
  t.diagnostic(
    `rank 1 (pid ${rank1}) killed at step ${HOLD}; resumed from step 4; ${((Date.now() - t0) / 1000).toFixed(1)} s`,
  );
});

const isAlive = (pid: number): boolean => {
  try {
    process.kill(pid, 0);
    return true;
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === 'ESRCH') return false;
    throw e;
  }
};

test('fenced: the engine runner holds the stage lease for the fixture (layout ours, not our CLI); a newer writer takes the stage mid-run, the runner kills torchrun and its ranks, trainShard is retried; the final is byte-identical', async (t) => {
  const job = 'torchrun-fenced';
  const t0 = Date.now();
  const sDir = stageDir(job, '3s');
  const { h } = await startHeld(job);
  // The runner took the stage's first lease for the trainer, which takes none itself.
  const lease = (n: number) =>
    JSON.parse(readText(path.join(sDir, 'leases', `${String(n).padStart(8, '0')}.json`)) || 'null') as {
      who: string;
    } | null;
  assert.match(lease(1)?.who ?? '(no lease 1)', new RegExp(`^workflow ${job} activity attempt 1$`));
  const ranks = [0, 1].map((r) => ddpRankPid(`${path.join(env.runs, job)}/`, r));
  // A newer writer (as a retried attempt would) takes the stage while the trainer holds at step HOLD.
  const newer = Lease.acquire(sDir, 'a newer writer (the test)');
  assert.equal(newer.epoch, 2);
  const result = (await h.result()) as CurriculumResult;
  assert.equal(result.stages[0]!.steps, STEPS);

  // The fenced attempt failed retryably with the fence's message; the second took the next lease and completed.
  await assertRetriedOnce(
    job,
    /fenced: lease 1 on .*\/3s was superseded by lease 2 \(a newer writer \(the test\), pid \d+/,
  );
  assert.match(lease(3)?.who ?? '(no lease 3)', new RegExp(`^workflow ${job} activity attempt 2$`));

  // The runner killed torchrun (its group, ranks included) at the hold; the retried run resumed from step 4.
  const runs = runsLog(job, '3s');
  assert.deepEqual(
    runs.map((r) => [r.exit, r.startStep, r.endStep]),
    [
      ['SIGKILL', 0, 4],
      ['0', 4, STEPS],
    ],
  );
  for (const pid of ranks) assert.equal(isAlive(pid), false, `rank pid ${pid} of the fenced run is gone`);
  const [fenced, resumed, ...more] = outputRuns(job, '3s');
  assert.ok(fenced && resumed && more.length === 0, 'two runs of torchrun');
  assert.equal(progressSteps(fenced).at(-1), HOLD, 'the fenced run trained no step after the hold');
  assert.ok(resumed.some((l) => l.endsWith('Resuming experiment at step 4.')));
  assert.deepEqual(metricSteps(sDir), [1, 2, 3, 4, 5, 6, 5, 6, 7, 8], 'steps 5 and 6 trained again');

  // Bit-exact: the same weights as the stage that was never interrupted.
  const reference = (await curriculum()).result.stages[0]!;
  assert.equal(result.stages[0]!.modelSha256, reference.modelSha256);
  t.diagnostic(
    `fenced at step ${HOLD} (ranks ${ranks.join(', ')}); resumed from step 4; ${((Date.now() - t0) / 1000).toFixed(1)} s`,
  );
});
