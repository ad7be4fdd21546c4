/**
 * `npm run record-histories`: records real histories of the tiny curriculum on a real Temporal dev
 * server and worker, for the replay test (test/unit/replay.test.ts) to replay on the current
 * workflow code. Writes test/fixtures/histories/<name>.json (proto3 JSON, as the SDK's historyToJSON
 * and `temporal workflow show --output json`). Scenarios (see test/histories.ts for what each must show):
 *
 *   plain                 until 9s, two-step shards: several trainShard activities per stage
 *   pause-resume          pause while a shard runs (it checkpoints and is cancelled), then resume
 *   set-until             setUntil "12s" (rejected by the validator), then "3sec" (accepted)
 *   continue-as-new       the first run of a chain on a server that suggests continue-as-new early
 *   continue-as-new-last  the last run of that chain (started with the carried state, completed)
 *   shard-retry           the training child SIGKILLed mid-shard: the attempt fails and is retried
 *
 * Only re-record after a deliberate workflow change that is patched (README, "Upgrading workers
 * under a running job"): the old fixtures are what running jobs look like.
 *
 *   node dist/bench/record-histories.js [name ...]   (default: all)
 */
import { execFileSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as path from 'node:path';
import type { Client, WorkflowHandle } from '@temporalio/client';
import { pauseSignal, progressQuery, resumeSignal, setUntilUpdate, startJob } from '../src/temporal/client';
import type { Overrides } from '../src/config/load';
import { startDevServer, type DevServer } from '../src/temporal/devserver';
import type { CurriculumInput } from '../src/shared/types';
import { FIXTURES, fixtureFile, HISTORIES_DIR, historyToJson } from '../test/histories';
import {
  client as connect,
  metricSteps,
  ROOT,
  spawnWorker,
  tmpDir,
  trainingChildren,
  waitFor,
  type WorkerProc,
} from '../test/helpers';

const log = (line: string): void => {
  process.stderr.write(`record-histories: ${line}\n`);
};

interface Env {
  srv: DevServer;
  worker: WorkerProc;
  c: Client;
  runs: string;
  queue: string;
}

/** A dev server with a worker and a client; `dynamicConfig` for the continue-as-new server. */
async function open(dir: string, name: string, dynamicConfig?: Record<string, unknown>): Promise<Env> {
  const srv = await startDevServer({
    dbFile: path.join(dir, `${name}.sqlite`),
    headless: true,
    ...(dynamicConfig ? { dynamicConfig } : {}),
  });
  const queue = `record-${name}`;
  const worker = spawnWorker(srv.address, queue);
  await worker.ready;
  return { srv, worker, c: await connect(srv.address), runs: path.join(dir, 'runs'), queue };
}

async function close(env: Env): Promise<void> {
  await env.c.connection.close();
  await env.worker.kill('SIGTERM');
  await env.srv.stop();
}

function input(env: Env, job: string, until: string, set: Overrides): CurriculumInput {
  return {
    jobName: job,
    curriculum: 'configs/curriculum/tiny.toml',
    until,
    set: { 'job.dump_folder': env.runs, 'training.global_batch_size': 1, ...set },
  };
}

/** Short shards: two steps each, so that every stage runs several trainShard activities. */
const SHORT = { 'training.steps': 4, 'checkpoint.interval': 2, 'shard.max_steps': 2 };

/** Waits until `job`'s stage has trained `n` steps (its metrics.jsonl lines). */
const trained = (env: Env, job: string, stage: string, n: number): Promise<true> =>
  waitFor(
    `${job} ${stage} step ${n}`,
    () => (metricSteps(path.join(env.runs, job, stage)).length >= n ? true : undefined),
    180_000,
    20,
  );

async function save(c: Client, name: string, workflowId: string, runId?: string): Promise<void> {
  const history = await c.workflow.getHandle(workflowId, runId).fetchHistory();
  const fixture = FIXTURES.find((f) => f.name === name)!;
  if (!fixture.check(history)) throw new Error(`${name}: the recorded history does not show ${fixture.shows}`);
  fs.writeFileSync(fixtureFile(name), historyToJson(history));
  log(`${name}: ${history.events?.length} events -> ${path.relative(process.cwd(), fixtureFile(name))}`);
}

async function finish(h: WorkflowHandle): Promise<void> {
  await h.result();
}

const SCENARIOS: Record<string, (env: Env) => Promise<void>> = {
  async plain(env) {
    const h = await startJob(env.c, input(env, 'plain', '9s', SHORT), { taskQueue: env.queue });
    await finish(h);
    await save(env.c, 'plain', 'plain');
  },

  async 'pause-resume'(env) {
    const job = 'pause-resume';
    // One long shard: the pause lands while it runs.
    const h = await startJob(env.c, input(env, job, '3s', { 'training.steps': 20, 'checkpoint.interval': 10 }), {
      taskQueue: env.queue,
    });
    await trained(env, job, '3s', 2);
    await h.signal(pauseSignal);
    await waitFor('paused', async () => ((await h.query(progressQuery)).state === 'paused' ? true : undefined));
    await h.signal(resumeSignal);
    await finish(h);
    await save(env.c, job, job);
  },

  async 'set-until'(env) {
    const job = 'set-until';
    const h = await startJob(env.c, input(env, job, '9s', { ...SHORT, 'training.steps': 8 }), {
      taskQueue: env.queue,
    });
    await trained(env, job, '3s', 1);
    const rejected = await h.executeUpdate(setUntilUpdate, { args: ['12s'] }).then(
      () => false,
      () => true,
    );
    if (!rejected) throw new Error('set-until: setUntil("12s") was accepted');
    const accepted = await h.executeUpdate(setUntilUpdate, { args: ['3sec'] });
    if (accepted !== '3s') throw new Error(`set-until: setUntil("3sec") returned ${accepted}`);
    await finish(h);
    await save(env.c, job, job);
  },

  async 'continue-as-new'(env) {
    const job = 'continue-as-new';
    // As test/integration/continue-as-new.test.ts: a server that suggests continue-as-new after 30
    // events, and two-step shards, so that stage 1 alone passes 30 events.
    const h = await startJob(env.c, input(env, job, '9s', { ...SHORT, 'training.steps': 8 }), {
      taskQueue: env.queue,
    });
    const first = (await h.describe()).runId;
    await env.c.workflow.getHandle(job).result();
    const lastRun = (await env.c.workflow.getHandle(job).describe()).runId;
    if (lastRun === first) throw new Error('continue-as-new: the job did not continue as new');
    let chain = 0;
    for await (const _ of env.c.workflow.list({ query: `WorkflowId = '${job}'` })) chain++;
    log(`continue-as-new: a chain of ${chain} runs; keeping the first and the last`);
    await save(env.c, 'continue-as-new', job, first);
    await save(env.c, 'continue-as-new-last', job, lastRun);
  },

  async 'shard-retry'(env) {
    const job = 'shard-retry';
    const h = await startJob(env.c, input(env, job, '3s', { 'training.steps': 20, 'checkpoint.interval': 5 }), {
      taskQueue: env.queue,
    });
    await trained(env, job, '3s', 1);
    const children = trainingChildren(path.join(env.runs, job));
    if (children.length !== 1) throw new Error(`shard-retry: ${children.length} training children, expected 1`);
    process.kill(children[0]!, 'SIGKILL');
    log(`shard-retry: killed training child ${children[0]}`);
    await finish(h);
    await save(env.c, job, job);
  },
};

async function main(): Promise<void> {
  const wanted = process.argv.slice(2);
  const names = wanted.length > 0 ? wanted : Object.keys(SCENARIOS);
  for (const n of names) if (!SCENARIOS[n]) throw new Error(`unknown scenario ${n}; one of ${Object.keys(SCENARIOS)}`);
  fs.mkdirSync(HISTORIES_DIR, { recursive: true });
  const dir = tmpDir('record');
  log(`runs and servers in ${dir}`);
  const plain = names.filter((n) => n !== 'continue-as-new');
  if (plain.length > 0) {
    const env = await open(dir, 'main');
    try {
      for (const n of plain) await SCENARIOS[n]!(env);
    } finally {
      await close(env);
    }
  }
  if (names.includes('continue-as-new')) {
    const env = await open(dir, 'can', { 'limit.historyCount.suggestContinueAsNew': 30 });
    try {
      await SCENARIOS['continue-as-new']!(env);
    } finally {
      await close(env);
    }
  }
  fs.rmSync(dir, { recursive: true, force: true });
  // In the layout the formatter keeps (biome check runs in CI over the whole tree, JSON included).
  execFileSync(path.join(ROOT, 'node_modules', '.bin', 'biome'), ['format', '--write', HISTORIES_DIR], {
    stdio: 'inherit',
  });
}

main().catch((e: unknown) => {
  log(e instanceof Error ? (e.stack ?? e.message) : String(e));
  process.exit(1);
});
