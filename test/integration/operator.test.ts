/**
 * Operator experience against one running job on a real dev server: "waiting for a worker"
 * until a worker starts, then `watch` sees stage and step advance; the job is listed by its
 * TrainingStage search attribute (client and `temporal workflow list`) and its current details
 * and activity summaries read "stage 3s, step N/30, loss X"; the worker's Prometheus endpoint
 * serves our metrics and Temporal's during the run; log lines carry job, stage, step and
 * attempt; `plot` draws exactly the metrics files (SVG parsed, PNG checked). (A server without
 * the search attributes: search-attributes.test.ts.)
 */
import assert from 'node:assert/strict';
import { execFileSync, spawn } from 'node:child_process';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { after, before, test } from 'node:test';
import type { Client } from '@temporalio/client';
import { defaultPayloadConverter } from '@temporalio/common';
import type { temporal } from '@temporalio/proto';
import { freePort, temporalCli, type DevServer } from '../../src/temporal/devserver';
import type { MetricRow, ValidationRow } from '../../src/plot/plot';
import { isValidationLine } from '../../src/train/metrics';
import type { CurriculumResult } from '../../src/shared/types';
import { TRAINING_JOB, TRAINING_STAGE, TRAINING_STEP } from '../../workflows/definitions';
import {
  CLI,
  client,
  eventTypeName,
  freezeTrainingWhen,
  logMark,
  historyEvents,
  ROOT,
  server,
  spawnWorker,
  tmpDir,
  waitFor,
  type WorkerProc,
} from '../helpers';

let srv: DevServer;
let worker: WorkerProc | undefined;
let c: Client;
const dir = tmpDir('operator');
const runs = path.join(dir, 'runs');
const queue = 'operator';
const job = 'ops-job';

before(async () => {
  srv = await server(path.join(dir, 'temporal.sqlite'));
  c = await client(srv.address);
});

after(async () => {
  await c?.connection.close();
  await worker?.kill('SIGTERM');
  await srv?.stop();
});

function cli(args: string[]): string {
  return execFileSync(process.execPath, [CLI, ...args, '--address', srv.address], {
    cwd: ROOT,
    encoding: 'utf8',
    env: { ...process.env, TTT_LOG_LEVEL: 'warn' },
  });
}

const metadata = async (id: string): Promise<temporal.api.sdk.v1.IWorkflowMetadata> =>
  c.workflow.getHandle(id).query<temporal.api.sdk.v1.IWorkflowMetadata>('__temporal_workflow_metadata');

function metricLines(stage: string): (MetricRow | ValidationRow)[] {
  return fs
    .readFileSync(path.join(runs, job, stage, 'metrics.jsonl'), 'utf8')
    .split('\n')
    .filter(Boolean)
    .map((l) => JSON.parse(l) as MetricRow | ValidationRow);
}
const metricRows = (stage: string): MetricRow[] =>
  metricLines(stage).filter((l): l is MetricRow => !isValidationLine(l));
const validationRows = (stage: string): ValidationRow[] => metricLines(stage).filter(isValidationLine);

/** Every element opened is closed in order: the SVG is well-formed XML (no parser dependency for this). */
function assertWellFormed(svg: string): void {
  const stack: string[] = [];
  for (const m of svg.matchAll(/<(\/?)([A-Za-z][\w:-]*)[^>]*?(\/?)>/g)) {
    if (m[1]) assert.equal(stack.pop(), m[2], `closing </${m[2]}>`);
    else if (!m[3]) stack.push(m[2]!);
  }
  assert.deepEqual(stack, [], 'every element is closed');
}

/** Why the pseudo-terminal checks are skipped (reported by the runner, never silently). */
const NO_SCRIPT =
  'no /usr/bin/script (util-linux/bsdutils) to run watch in a pseudo-terminal: install it (.ci/run does)';

test('a running job: waiting for a worker, watch, search attributes, current details, summaries, Prometheus, logs, plot', async (t) => {
  const t0 = Date.now();
  // Started with the `start` command, until 3s; `until` below extends it to 9s.
  const set = {
    'job.dump_folder': runs,
    'training.global_batch_size': 1,
    'training.steps': 30,
    'checkpoint.interval': 10,
    'shard.progress_seconds': 1,
  };
  assert.match(
    cli([
      'start',
      job,
      '--until',
      '3s',
      '--task-queue',
      queue,
      ...Object.entries(set).flatMap(([k, v]) => ['--set', `${k}=${v}`]),
    ]),
    /^job ops-job running \(run [\w-]+\)/,
  );
  const h = c.workflow.getHandle(job);
  // watch before any worker polls the task queue.
  const watch = spawn(
    process.execPath,
    [CLI, 'watch', job, '--no-tty', '--interval', '300', '--address', srv.address],
    { cwd: ROOT, stdio: ['ignore', 'pipe', 'pipe'], env: { ...process.env, TTT_LOG_LEVEL: 'warn' } },
  );
  let out = '';
  watch.stdout.on('data', (b: Buffer) => (out += b.toString()));
  const watchExit = new Promise<number | null>((resolve) => watch.once('exit', (code) => resolve(code)));
  await waitFor(
    'watch says "waiting for a worker"',
    () => (/\[waiting for a worker\]/.test(out) ? true : undefined),
    30_000,
  );

  // The same in a pseudo-terminal (util-linux `script`, where available): progress bars.
  const hasScript = fs.existsSync('/usr/bin/script');
  let ttyOut = '';
  const ttyWatch = hasScript
    ? spawn(
        '/usr/bin/script',
        [
          '-qfec',
          `${JSON.stringify(process.execPath)} ${JSON.stringify(CLI)} watch ${job} --interval 300 --address ${srv.address}`,
          '/dev/null',
        ],
        { cwd: ROOT, stdio: ['pipe', 'pipe', 'pipe'], env: { ...process.env, TTT_LOG_LEVEL: 'warn', COLUMNS: '160' } },
      )
    : undefined;
  ttyWatch?.stdout?.on('data', (b: Buffer) => (ttyOut += b.toString()));
  const ttyExit = ttyWatch
    ? new Promise<number | null>((resolve) => ttyWatch.once('exit', (code) => resolve(code)))
    : Promise.resolve(0);

  if (ttyWatch)
    await waitFor(
      'the pseudo-terminal watch says "waiting for a worker"',
      () => (ttyOut.includes('[waiting for a worker]') ? true : undefined),
      30_000,
    );

  const metricsPort = await freePort();
  worker = spawnWorker(srv.address, queue, {}, [
    '--metrics-port',
    String(metricsPort),
    '--metrics-host',
    '127.0.0.1',
    '--allow-path',
    dir,
  ]);
  await worker.ready;

  // Observations "while a stage runs" are made with its training child frozen (SIGSTOP) at a
  // metrics line, triggered by the line itself: the stage is then certainly running, at a known
  // step, whatever the machine's speed. The child is continued once both watches showed the step.
  const marker = `${path.join(runs, job)}"`;
  const bars = (): string => ttyOut.replace(/\x1b\[[0-9;?]*[A-Za-z]/g, '\n');
  const freeze = (stage: string, atLeast: number) =>
    freezeTrainingWhen(path.join(runs, job, stage), marker, (last) => last >= atLeast && last < 30);
  // The child writes step L's metrics line, then its progress line: frozen at line L, it has
  // reported L - 1 for certain and L perhaps, so a watch shows L - 1 or L, and nothing else.
  const lastShown = (text: string, re: RegExp): number | undefined => {
    const all = [...text.matchAll(re)];
    return all.length ? Number(all[all.length - 1]![1]) : undefined;
  };
  const seenBars: number[] = [];
  const watchesShow = async (stage: string, last: number): Promise<void> => {
    const steps = `(${last - 1}|${last})`;
    seenFrozen[stage]!.push(
      await waitFor(`watch shows ${stage} step ${last - 1} or ${last}`, () =>
        lastShown(out, new RegExp(`stage ${stage}, step ${steps}/30`, 'g')),
      ),
    );
    if (ttyWatch) {
      const bar = await waitFor(`the pseudo-terminal watch shows ${stage} step ${last - 1} or ${last}`, () =>
        lastShown(bars(), new RegExp(` ${stage} \\|[█░]+\\| ${steps}/30 steps`, 'g')),
      );
      if (stage === '9s') seenBars.push(bar);
    }
  };
  const seenFrozen: Record<string, number[]> = { '3s': [], '9s': [] };
  let frozen = { ...(await freeze('3s', 3)), stage: '3s' as string };

  // Listed by TrainingStage through the client while stage 3s runs, with the other attributes set.
  const listed = await waitFor(
    'the job listed by TrainingStage="3s"',
    async () => {
      for await (const w of c.workflow.list({ query: `TrainingStage = "3s" AND ExecutionStatus = "Running"` }))
        if (w.workflowId === job) return w;
      return undefined;
    },
    60_000,
    200,
  );
  assert.equal(listed.typedSearchAttributes.get(TRAINING_JOB), job);
  assert.equal(listed.typedSearchAttributes.get(TRAINING_STAGE), '3s');
  assert.match(cli(['until', job, '9s']), /ops-job will stop after stage 9s/);

  // Current details follow the running shard (progress reports every second), not only shard ends.
  const details = await waitFor(
    'current details at a step inside stage 3s',
    async () => {
      const d = (await metadata(job)).currentDetails ?? '';
      const m = /^stage 3s, step (\d+)\/30, loss (\d[\d.e-]*) \(stage 1 of 5\)$/.exec(d);
      return m && Number(m[1]) > 0 && Number(m[1]) < 30 ? d : undefined;
    },
    60_000,
    100,
  );
  assert.ok(Number(/step (\d+)/.exec(details)![1]) > 0);
  const stepAttr = await waitFor(
    'TrainingStep > 0 in visibility',
    async () => {
      for await (const w of c.workflow.list({ query: `WorkflowId = "${job}" AND TrainingStep > 0` }))
        return w.typedSearchAttributes.get(TRAINING_STEP);
      return undefined;
    },
    30_000,
    200,
  );
  assert.ok(stepAttr! > 0 && stepAttr! <= 30);

  // Prometheus: our metrics and Temporal's, from the worker's one endpoint, during the run.
  const scrape = await waitFor(
    'ttt_* metrics of the running job on the worker endpoint',
    async () => {
      const text = await fetch(`http://127.0.0.1:${metricsPort}/metrics`).then(
        (r) => r.text(),
        () => '',
      );
      return /ttt_checkpoint_bytes_total\{[^}]*job="ops-job"/.test(text) &&
        /ttt_steps_total\{[^}]*job="ops-job"[^}]*stage="3s"[^}]*\} [1-9]/.test(text)
        ? text
        : undefined;
    },
    60_000,
    300,
  );
  for (const name of [
    'ttt_steps_total',
    'ttt_step',
    'ttt_loss',
    'ttt_grad_norm',
    'ttt_val_loss',
    'ttt_step_seconds_bucket',
    'ttt_step_seconds_count',
    'ttt_checkpoints_total',
    'ttt_checkpoint_save_seconds_count',
    'ttt_checkpoint_bytes_total',
    'ttt_checkpoint_size_bytes',
  ]) {
    assert.match(scrape, new RegExp(`^${name}\\{[^}]*job="ops-job"[^}]*\\} \\d`, 'm'), `${name} in the scrape`);
  }
  // The shard's backend as labels of the step metrics (describeBackend: tensorflow where installed, else wasm).
  assert.match(
    scrape,
    /^ttt_steps_total\{[^}]*backend="(tensorflow|wasm)"[^}]*device="(cpu|gpu): [^"]+"[^}]*\} \d/m,
    'backend labels on ttt_steps_total',
  );
  assert.match(scrape, /^temporal_\w+/m, "Temporal's own metrics on the same endpoint");
  const bytes = Number(/^ttt_checkpoint_size_bytes\{[^}]*job="ops-job"[^}]*\} (\d+)/m.exec(scrape)![1]);
  const ck = path.join(runs, job, '3s', 'checkpoints');
  const someCk = fs.readdirSync(ck).find((d) => d.startsWith('step-'))!;
  const ckBytes = fs
    .readdirSync(path.join(ck, someCk))
    .reduce((n, f) => n + fs.statSync(path.join(ck, someCk, f)).size, 0);
  assert.equal(bytes, ckBytes, 'checkpoint size is the bytes on disk');
  // Two steps inside each stage, seen by both watches.
  for (const [stage, atLeast] of [
    ['3s', 15],
    ['9s', 3],
  ] as const) {
    await watchesShow(frozen.stage, frozen.last);
    process.kill(frozen.pid, 'SIGCONT');
    frozen = { ...(await freeze(stage, atLeast)), stage };
  }

  // `temporal workflow list --query 'TrainingStage="9s"'`, as in the README, once stage 9s runs.
  const listedByCli = await waitFor(
    'temporal workflow list --query TrainingStage="9s"',
    () => {
      const text = execFileSync(
        temporalCli(),
        ['workflow', 'list', '--address', srv.address, '--query', 'TrainingStage="9s"'],
        { encoding: 'utf8' },
      );
      return text.includes(job) ? text : undefined;
    },
    90_000,
    500,
  );
  assert.match(listedByCli, /Running\s+ops-job\s+trainCurriculum/);
  await watchesShow(frozen.stage, frozen.last);
  process.kill(frozen.pid, 'SIGCONT');
  frozen = { ...(await freeze('9s', 15)), stage: '9s' };
  await watchesShow(frozen.stage, frozen.last);
  // pause and resume with the commands, in stage 9s (certainly running: its child is frozen).
  // The child stays frozen until the worker has passed the stop on to it, so that the pause lands
  // mid-stage however fast the remaining steps would run.
  const stop = logMark(worker!, 'asking the training child to checkpoint and stop');
  assert.match(cli(['pause', job]), /pause sent to ops-job/);
  await stop.next('the worker asks the frozen training child to stop');
  process.kill(frozen.pid, 'SIGCONT');
  await waitFor(
    'paused',
    () => ((JSON.parse(cli(['status', job, '--json'])) as { state: string }).state === 'paused' ? true : undefined),
    60_000,
    300,
  );
  // The validation loss (configs/train/tiny: measured at each stage's start and end, 3s also every 10 steps).
  assert.match(
    cli(['status', job]),
    /^ops-job: stage 9s, step \d+\/30, loss [\d.]+ \[paused\](; val loss [\d.]+ at step \d+)?\n {2}3s +30\/30 done loss [\d.]+ {2}val loss [\d.]+ -> [\d.]+\n/,
  );
  assert.match((await metadata(job)).currentDetails ?? '', /^stage 9s, step \d+\/30, loss .* \[paused\]$/);
  assert.match(cli(['resume', job]), /resume sent to ops-job/);
  const status = JSON.parse(cli(['status', job, '--json'])) as Record<string, unknown> & {
    stages: Record<string, unknown>[];
  };
  assert.deepEqual(
    Object.keys(status).sort(),
    [
      'attempt',
      'backend',
      'connection',
      'device',
      'etaSeconds',
      'job',
      'jobDir',
      'lastCheckpoint',
      'lastFailure',
      'launcher',
      'loss',
      'result',
      'stage',
      'stages',
      'state',
      'status',
      'step',
      'stepsPerSecond',
      'totalSteps',
      'until',
      'valLoss',
      'valStep',
      'worker',
    ].sort(),
  );
  assert.deepEqual(
    Object.keys(status.stages[0]!).sort(),
    [
      'done',
      'etaSeconds',
      'finalCheckpoint',
      'loss',
      'stage',
      'step',
      'stepsPerSecond',
      'totalSteps',
      'valLoss',
      'valLossStart',
      'valStep',
    ].sort(),
  );
  // Stage 3s is done: its validation loss at the start and the end, as its metrics file has them.
  const val3 = validationRows('3s');
  assert.deepEqual(
    val3.map((v) => v.step),
    [0, 10, 20, 30],
    '3s: validation at the start, every validation.interval = 10 steps and at the end',
  );
  assert.deepEqual(
    [status.stages[0]!.valLossStart, status.stages[0]!.valLoss, status.stages[0]!.valStep],
    [val3[0]!.val_loss, val3[3]!.val_loss, 30],
  );
  assert.equal(status.worker, 'polling');
  // Where and how `status` connected: a plaintext dev server, no credentials.
  assert.deepEqual(status.connection, {
    address: srv.address,
    namespace: 'default',
    profile: null,
    tls: false,
    serverName: null,
    serverCa: false,
    clientCert: false,
    apiKey: false,
  });
  assert.equal(status.jobDir, path.join(runs, job));

  const result = (await h.result()) as CurriculumResult;
  assert.deepEqual(
    result.stages.map((s) => [s.stage, s.steps]),
    [
      ['3s', 30],
      ['9s', 30],
    ],
  );
  // The result carries each stage's validation loss at its start and end, from its metrics file.
  for (const st of result.stages) {
    const v = validationRows(st.stage);
    assert.deepEqual(
      [st.valLossStart, st.valLossEnd],
      [v.find((x) => x.step === 0)!.val_loss, v.find((x) => x.step === 30)!.val_loss],
      `${st.stage}: validation loss at start and end`,
    );
  }
  assert.equal(await watchExit, 0);
  assert.equal(await ttyExit, 0);
  await t.test('progress bars in a pseudo-terminal', { skip: hasScript ? false : NO_SCRIPT }, () => {
    // Bars: "  9s |████░░░░| 12/30 steps | loss 0.6079 | 2.10 steps/s | ETA 9s", redrawn in place.
    const drawn = bars();
    assert.match(drawn, /ops-job: stage -, step 0\/0, loss - \[waiting for a worker\]/, 'a line while no worker polls');
    assert.match(drawn, / 3s \|[█░]+\| 30\/30 steps \| loss \d\.\d{4} \| [\d.-]+ steps\/s \| ETA done/);
    // The ETA in any of formatEta's units: early in a stage the smoothed rate is still low, and
    // whether the ETA reads "55s" or "2m" there depends on the machine's speed, not on the bar.
    const partial = [
      // Rate and ETA are "-" until the watch has seen the stage advance.
      ...drawn.matchAll(/ 9s \|[█░]+\| (\d+)\/30 steps \| loss [\d.]+ \| ([\d.]+|-) steps\/s \| ETA (\S+)/g),
    ].map((m) => Number(m[1]));
    for (const n of seenBars) assert.ok(partial.includes(n), `the 9s bar showed step ${n}: ${partial.join(',')}`);
  });

  // watch: waited, then saw both stages advance, never backwards, to the end.
  const seen = [...out.matchAll(/stage (3s|9s), step (\d+)\/30/g)].map((m) => [m[1]!, Number(m[2])] as const);
  for (const s of ['3s', '9s']) {
    const steps = seen.filter(([st]) => st === s).map(([, n]) => n);
    assert.equal(new Set(seenFrozen[s]).size, 2, `two distinct frozen steps of ${s}: ${seenFrozen[s]}`);
    for (const n of seenFrozen[s]!) assert.ok(steps.includes(n), `watch saw ${s} at step ${n}: ${steps.join(',')}`);
    assert.deepEqual(
      steps,
      [...steps].sort((a, b) => a - b),
      `${s}: steps only go forward`,
    );
  }
  assert.ok(out.indexOf('waiting for a worker') < out.indexOf('stage 3s, step 1'), 'waiting came before training');
  assert.match(out, /steps\/s, ETA \d+s\)/, 'watch shows steps/s and ETA');
  assert.match(out, /stage 9s, step 30\/30, loss \d[\d.e-]* \[completed\]/);

  // Current details after the end, and the trainShard summaries in the history.
  assert.match((await metadata(job)).currentDetails ?? '', /^completed 2 stages through 9s, last loss \d/);
  const summaries = (await historyEvents(c, job))
    .filter((e) => eventTypeName(e) === 'EVENT_TYPE_ACTIVITY_TASK_SCHEDULED')
    .map((e) => [
      e.activityTaskScheduledEventAttributes?.activityType?.name,
      e.userMetadata?.summary
        ? defaultPayloadConverter.fromPayload<string>(e.userMetadata.summary as never)
        : undefined,
    ]);
  const shardSummaries = summaries.filter(([t]) => t === 'trainShard').map(([, s]) => s!);
  assert.deepEqual(shardSummaries.slice(0, 2), ['stage 3s, step 0/30, loss -', 'stage 9s, step 0/30, loss -']);
  assert.equal(shardSummaries.length, 3, 'the shard after resume');
  assert.match(shardSummaries[2]!, /^stage 9s, step [1-9]\d*\/30, loss \d[\d.]*$/, 'its summary says where it resumes');
  assert.deepEqual(
    summaries.filter(([t]) => t === 'promoteStage').map(([, s]) => s),
    ['promote stage 3s (30 steps)', 'promote stage 9s (30 steps)'],
  );

  // Log lines: one JSON object per line, job, stage, step and attempt bound (worker and training child).
  const lines = worker
    .stderr()
    .split('\n')
    .filter((l) => l.startsWith('{'))
    .map((l) => JSON.parse(l) as Record<string, unknown>);
  for (const msg of ['checkpoint saved', 'shard finished']) {
    const l = lines.find((x) => x.msg === msg && x.job === job);
    assert.ok(l, `a "${msg}" line of the job`);
    assert.ok(
      ['3s', '9s'].includes(l.stage as string) && typeof l.step === 'number' && l.attempt === 1,
      `"${msg}" binds stage, step, attempt: ${JSON.stringify(l)}`,
    );
  }

  // plot: SVG whose points are exactly the metrics files' values, placed in order; PNG valid.
  const svgFile = path.join(dir, 'ops.svg');
  const pngFile = path.join(dir, 'ops.png');
  const vals = [...validationRows('3s'), ...validationRows('9s')];
  assert.match(
    cli(['plot', job, '--out', svgFile]),
    new RegExp(`wrote .*ops\\.svg: 60 steps of stages 3s, 9s, ${vals.length} validation points`),
  );
  cli(['plot', job, '--out', pngFile]);
  const svg = fs.readFileSync(svgFile, 'utf8');
  assert.match(svg, /^<svg [^>]*xmlns="http:\/\/www\.w3\.org\/2000\/svg"[^>]*width="(\d+)" height="(\d+)"/);
  assertWellFormed(svg);
  const points = [
    ...svg.matchAll(
      /<path aria-label="(\w+) stage (\w+) step (\d+) = ([^"]+)" role="graphics-symbol" aria-roledescription="point" transform="translate\(([-\d.e]+),([-\d.e]+)\)"/g,
    ),
  ].map((m) => ({
    series: m[1]!,
    key: `${m[2]}/${m[3]}`,
    value: Number(m[4]),
    x: Number(m[5]),
    y: Number(m[6]),
  }));
  const rows = [...metricRows('3s'), ...metricRows('9s')];
  for (const series of ['loss', 'grad_norm', 'lr', 'lr_ssm'] as const) {
    const drawn = points.filter((p) => p.series === series);
    const expected = rows.map((r) => `${r.stage}/${r.step}=${r[series]}`).sort();
    assert.deepEqual(
      drawn.map((p) => `${p.key}=${p.value}`).sort(),
      expected,
      `${series}: one point per metrics line, same values`,
    );
  }
  assert.deepEqual(
    points
      .filter((p) => p.series === 'val_loss')
      .map((p) => `${p.key}=${p.value}`)
      .sort(),
    vals.map((v) => `${v.stage}/${v.step}=${v.val_loss}`).sort(),
    'val_loss: one point per validation line, same values',
  );
  const loss = points.filter((p) => p.series === 'loss');
  const byLoss = [...loss].sort((a, b) => a.value - b.value);
  for (let i = 1; i < byLoss.length; i++)
    assert.ok(byLoss[i]!.y <= byLoss[i - 1]!.y + 1e-9, 'a higher loss is drawn higher');
  const byTime = rows.map((r) => loss.find((p) => p.key === `${r.stage}/${r.step}`)!);
  for (let i = 1; i < byTime.length; i++)
    assert.ok(byTime[i]!.x >= byTime[i - 1]!.x, 'later steps are drawn to the right, across stages');
  assert.match(svg, /aria-roledescription="rule mark"/, 'stage boundaries are marked');
  assert.ok(svg.includes('>9s</text>'), 'the 9s boundary is labelled');
  const png = fs.readFileSync(pngFile);
  assert.deepEqual([...png.subarray(0, 8)], [0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a], 'PNG signature');
  const [, w, hgt] = /width="(\d+)" height="(\d+)"/.exec(svg)!.map(Number);
  assert.deepEqual(
    [png.readUInt32BE(16), png.readUInt32BE(20)],
    [w! * 2, hgt! * 2],
    'PNG is the SVG at twice the size',
  );
  process.stderr.write(`# operator test: ${((Date.now() - t0) / 1000).toFixed(1)} s\n`);
});

test('cancel with the command; demo on an existing server ends with its plot; server registers the search attributes', async () => {
  const cancelJob = 'ops-cancel';
  cli([
    'start',
    cancelJob,
    '--until',
    '3s',
    '--task-queue',
    queue,
    '--set',
    `job.dump_folder=${runs}`,
    '--set',
    'training.steps=200',
    '--set',
    'training.global_batch_size=1',
  ]);
  await waitFor(
    'ops-cancel training',
    () => ((JSON.parse(cli(['status', cancelJob, '--json'])) as { step: number }).step > 0 ? true : undefined),
    60_000,
    300,
  );
  assert.match(cli(['cancel', cancelJob]), /cancel sent to ops-cancel/);
  await waitFor(
    'ops-cancel cancelled',
    () =>
      (JSON.parse(cli(['status', cancelJob, '--json'])) as { status: string }).status === 'CANCELLED'
        ? true
        : undefined,
    60_000,
    300,
  );

  // The demo against this server (TEMPORAL_ADDRESS set: it starts none), with its own worker.
  const demoRuns = path.join(dir, 'demo-runs');
  const demo = execFileSync(
    process.execPath,
    [
      CLI,
      'demo',
      '--job',
      'ops-demo',
      '--until',
      '3s',
      '--set',
      `job.dump_folder=${demoRuns}`,
      '--set',
      'training.steps=6',
      '--set',
      'training.global_batch_size=1',
    ],
    {
      cwd: ROOT,
      encoding: 'utf8',
      // The demo's in-process worker lets job inputs reach the test's folder (TTT_ALLOW_PATHS, as `worker --allow-path`).
      env: {
        ...process.env,
        TEMPORAL_ADDRESS: srv.address,
        TTT_TASK_QUEUE: 'ops-demo',
        TTT_LOG_LEVEL: 'warn',
        TTT_ALLOW_PATHS: dir,
      },
    },
  );
  assert.match(demo, /Job ops-demo \(configs\/curriculum\/tiny\.toml\) finished through stage 3s:/);
  // The summary row: single-step first and last loss, then the validation loss at start and end and its change.
  assert.match(
    demo,
    /stage +steps +first loss +last loss +val start +val end +val change +wall s +final checkpoint\n3s +6 +[\d.]+ +[\d.]+ +[\d.]+ +[\d.]+ +[-+][\d.]+% +[\d.]+ +\S+ops-demo\/3s\/final\n/,
  );
  assert.match(demo, /Loss, gradient norm and learning rates: .*ops-demo\/plot\.svg/);
  const pic = fs.readFileSync(path.join(demoRuns, 'ops-demo', 'plot.svg'), 'utf8');
  assert.equal([...pic.matchAll(/aria-label="loss stage 3s step \d+ = /g)].length, 6, 'the demo plot has the 6 steps');

  // `server`: a dev server in the foreground with the search attributes registered.
  const [port, uiPort] = [await freePort(), await freePort()];
  const srvProc = spawn(
    process.execPath,
    [CLI, 'server', '--port', String(port), '--ui-port', String(uiPort), '--db-filename', path.join(dir, 'fg.sqlite')],
    { cwd: ROOT, stdio: ['ignore', 'pipe', 'pipe'] },
  );
  let fg = '';
  srvProc.stdout.on('data', (b: Buffer) => (fg += b.toString()));
  const exited = new Promise<number | null>((resolve) => srvProc.once('exit', (code) => resolve(code)));
  try {
    await waitFor('server ready', () => (fg.includes('Ctrl-C stops it') ? true : undefined), 60_000);
    const list = execFileSync(
      temporalCli(),
      ['operator', 'search-attribute', 'list', '--address', `127.0.0.1:${port}`],
      { encoding: 'utf8' },
    );
    for (const [name, type] of [
      ['TrainingJob', 'Keyword'],
      ['TrainingStage', 'Keyword'],
      ['TrainingStep', 'Int'],
    ])
      assert.match(list, new RegExp(`${name}\\s+${type}`));
  } finally {
    srvProc.kill('SIGINT');
  }
  assert.equal(await exited, 0);
});
