/** Continue-as-new when Temporal suggests it: a server that suggests it early; the job still ends exact. */
import assert from 'node:assert/strict';
import * as path from 'node:path';
import { test } from 'node:test';
import { startJob } from '../../src/temporal/client';
import { startDevServer } from '../../src/temporal/devserver';
import type { CurriculumResult } from '../../src/shared/types';
import { client, metricSteps, spawnWorker, tmpDir } from '../helpers';

test('the workflow continues as new when suggested and carries its finished stages over', async () => {
  const dir = tmpDir('can');
  const runs = path.join(dir, 'runs');
  const srv = await startDevServer({
    dbFile: path.join(dir, 'temporal.sqlite'),
    headless: true,
    dynamicConfig: { 'limit.historyCount.suggestContinueAsNew': 30 },
  });
  const w = spawnWorker(srv.address, 'can', {}, ['--allow-path', dir]);
  try {
    await w.ready;
    const c = await client(srv.address);
    const job = 'can-job';
    // Two-step shards: many activities, so the history passes 30 events within stage 1.
    const h = await startJob(
      c,
      {
        jobName: job,
        curriculum: 'configs/curriculum/tiny.toml',
        until: '9s',
        set: {
          'job.dump_folder': runs,
          'training.steps': 12,
          'checkpoint.interval': 4,
          'shard.max_steps': 2,
          'training.global_batch_size': 1,
        },
      },
      { taskQueue: 'can' },
    );
    const first = (await h.describe()).runId;
    const result = (await c.workflow.getHandle(job).result()) as CurriculumResult;
    assert.deepEqual(
      result.stages.map((s) => [s.stage, s.steps]),
      [
        ['3s', 12],
        ['9s', 12],
      ],
    );
    const last = (await c.workflow.getHandle(job).describe()).runId;
    assert.notEqual(last, first, 'the job continued as new at least once');
    const runsSeen: string[] = [];
    for await (const e of c.workflow.list({ query: `WorkflowId = '${job}'` })) runsSeen.push(e.runId);
    assert.ok(runsSeen.length >= 2, `${runsSeen.length} runs`);
    for (const s of ['3s', '9s'])
      assert.equal(metricSteps(path.join(runs, job, s)).length, 12, `${s}: no step trained twice`);
    assert.ok(result.stages[0]!.wallSeconds > 0);
    await c.connection.close();
  } finally {
    await w.kill('SIGTERM');
    await srv.stop();
  }
});
