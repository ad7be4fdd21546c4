/**
 * A plain `temporal server start-dev` (no search attributes) just works. A worker told not to
 * register them warns once and runs; its jobs upsert no search attributes (none exist) and
 * complete; once an operator created them (the README's commands), the next job's plan sees them
 * and the job is listed by stage. A worker that may register them creates them itself.
 */
import assert from 'node:assert/strict';
import * as path from 'node:path';
import { after, before, test } from 'node:test';
import type { Client } from '@temporalio/client';
import type { temporal } from '@temporalio/proto';
import { startJob } from '../../src/temporal/client';
import type { DevServer } from '../../src/temporal/devserver';
import { client, historyEvents, spawnWorker, tmpDir } from '../helpers';
import { startDevServer, temporalCli } from '../../src/temporal/devserver';
import { createSearchAttributeCommands } from '../../src/temporal/search-attributes';
import { execFileSync } from 'node:child_process';

const dir = tmpDir('search-attributes');
const runs = path.join(dir, 'runs');
let bare: DevServer;
let c: Client;

before(async () => {
  bare = await startDevServer({ dbFile: path.join(dir, 'bare.sqlite'), headless: true, searchAttributes: false });
  c = await client(bare.address);
});
after(async () => {
  await c?.connection.close();
  await bare?.stop();
});

const set = {
  'job.dump_folder': runs,
  'training.global_batch_size': 1,
  'training.steps': 3,
  'checkpoint.interval': 3,
};

async function trainingAttributes(on: Client): Promise<string[]> {
  const r = await on.connection.operatorService.listSearchAttributes({ namespace: 'default' });
  return Object.keys(r.customAttributes ?? {})
    .filter((n) => n.startsWith('Training'))
    .sort();
}

async function runJob(on: Client, job: string, queue: string): Promise<temporal.api.history.v1.IHistoryEvent[]> {
  const h = await startJob(
    on,
    { jobName: job, curriculum: 'configs/curriculum/tiny.toml', until: '3s', set },
    { taskQueue: queue },
  );
  const r = await h.result();
  assert.deepEqual(
    r.stages.map((st: { stage: string; steps: number }) => [st.stage, st.steps]),
    [['3s', 3]],
  );
  return historyEvents(on, job);
}

/** Upserts of the job's own attributes (the SDK upserts TemporalChangeVersion for its patch markers). */
const upserts = (events: temporal.api.history.v1.IHistoryEvent[]): number =>
  events.filter((e) =>
    Object.keys(e.upsertWorkflowSearchAttributesEventAttributes?.searchAttributes?.indexedFields ?? {}).some((k) =>
      k.startsWith('Training'),
    ),
  ).length;

test('without the search attributes a job runs and upserts none; after the README commands it does', async () => {
  // A worker that may not create them (as on a hosted namespace without the permission).
  const w1 = spawnWorker(bare.address, 'no-sa', {}, ['--no-register-search-attributes', '--allow-path', dir]);
  await w1.ready;
  try {
    assert.match(
      w1.stderr(),
      /the job search attributes TrainingJob, TrainingStage and TrainingStep are not available/,
    );
    assert.match(w1.stderr(), /temporal operator search-attribute create --name TrainingJob --type Keyword/);
    const none = await runJob(c, 'sa-none', 'no-sa');
    assert.equal(upserts(none), 0, 'no search-attribute upsert in the history');
    assert.deepEqual(await trainingAttributes(c), []);
    // An operator creates them with the README's commands; the next job's plan sees them.
    for (const cmd of createSearchAttributeCommands('default'))
      execFileSync(temporalCli(), [...cmd.split(' ').slice(1), '--address', bare.address], { stdio: 'pipe' });
    assert.deepEqual(await trainingAttributes(c), ['TrainingJob', 'TrainingStage', 'TrainingStep']);
    const some = await runJob(c, 'sa-created', 'no-sa');
    assert.ok(upserts(some) >= 2, `${upserts(some)} upserts (job, stage, steps)`);
    const desc = await c.workflow.getHandle('sa-created').describe();
    assert.equal(desc.searchAttributes.TrainingStage?.[0], '3s');
    assert.equal(desc.searchAttributes.TrainingStep?.[0], 3);
  } finally {
    await w1.kill('SIGTERM');
  }
  assert.equal(w1.stderr().match(/are not available/g)?.length, 1, 'one warning, not one per job or activity');
});

test('a worker on a plain dev server registers the search attributes itself', async () => {
  const plain = await startDevServer({
    dbFile: path.join(dir, 'plain.sqlite'),
    headless: true,
    searchAttributes: false,
  });
  const pc = await client(plain.address);
  const w = spawnWorker(plain.address, 'with-sa', {}, ['--allow-path', dir]);
  try {
    await w.ready;
    assert.match(w.stderr(), /registered the job search attributes/);
    assert.deepEqual(await trainingAttributes(pc), ['TrainingJob', 'TrainingStage', 'TrainingStep']);
    const events = await runJob(pc, 'sa-registered', 'with-sa');
    assert.ok(upserts(events) >= 2, `${upserts(events)} upserts (job, stage, steps)`);
  } finally {
    await w.kill('SIGTERM');
    await pc.connection.close();
    await plain.stop();
  }
});
