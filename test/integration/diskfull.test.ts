/**
 * A full disk under a running job (a real tmpfs holds the job folder): the save fails, the
 * previous checkpoint stays intact, `status` shows a clear reason, and the job goes on by
 * itself once there is space again.
 */
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { test } from 'node:test';
import { startJob } from '../../src/temporal/client';
import { listCheckpoints, verifyCheckpoint } from '../../src/checkpoint/store';
import { jobStatus } from '../../src/temporal/status';
import type { CurriculumResult } from '../../src/shared/types';
import { client, server, spawnWorker, tmpDir, waitFor } from '../helpers';

test('disk full during a save: previous checkpoint intact, clear failure in status, the job continues once space is freed', async (t) => {
  const dir = tmpDir('diskfull-job');
  const mnt = path.join(dir, 'mnt');
  fs.mkdirSync(mnt);
  try {
    execFileSync('mount', ['-t', 'tmpfs', '-o', 'size=24m', 'tmpfs', mnt], { stdio: 'ignore' });
  } catch {
    return t.skip('mounting a tmpfs needs root (CAP_SYS_ADMIN)');
  }
  const srv = await server(path.join(dir, 'temporal.sqlite'));
  const queue = 'diskfull';
  const job = 'diskfull-job';
  const runs = path.join(mnt, 'runs');
  const w = spawnWorker(srv.address, queue, {}, ['--allow-path', dir]);
  const ballast = path.join(mnt, 'ballast');
  try {
    await w.ready;
    const c = await client(srv.address);
    const handle = await startJob(
      c,
      {
        jobName: job,
        curriculum: 'configs/curriculum/tiny.toml',
        until: '3s',
        set: {
          'job.dump_folder': runs,
          'training.steps': 16,
          'checkpoint.interval': 4,
          'training.global_batch_size': 1,
        },
      },
      { taskQueue: queue },
    );
    const ck = path.join(runs, job, '3s', 'checkpoints');
    await waitFor('the step-4 checkpoint', () => listCheckpoints(ck).some((x) => x.step === 4), 120_000, 20);
    // Fill the disk, leaving 64 KB: room for metrics lines, not for a checkpoint (about 0.9 MB).
    const fd = fs.openSync(ballast, 'w');
    try {
      for (;;) fs.writeSync(fd, Buffer.alloc(256 * 1024));
    } catch (e) {
      assert.equal((e as NodeJS.ErrnoException).code, 'ENOSPC');
    } finally {
      fs.closeSync(fd);
    }
    fs.truncateSync(ballast, fs.statSync(ballast).size - 64 * 1024);
    const failure = await waitFor(
      'the shard to fail on the full disk',
      async () => (await jobStatus(c, job)).lastFailure ?? undefined,
      120_000,
      200,
    );
    assert.match(failure, /disk full: ENOSPC: no space left on device/);
    assert.match(failure, /previous ones are intact/);
    const intact = listCheckpoints(ck)[0]!;
    assert.ok(intact.step >= 4);
    assert.ok(verifyCheckpoint(intact.dir).ok, `the newest checkpoint (step ${intact.step}) verifies`);
    fs.rmSync(ballast);
    const result = (await handle.result()) as CurriculumResult;
    assert.equal(result.stages.length, 1);
    assert.equal(result.stages[0]!.steps, 16);
    const v = verifyCheckpoint(result.stages[0]!.finalCheckpoint);
    assert.ok(v.ok && v.state.step === 16);
    await c.connection.close();
  } finally {
    await w.kill('SIGTERM');
    await srv.stop();
    fs.rmSync(ballast, { force: true });
    execFileSync('umount', ['-l', mnt]);
  }
});
