/**
 * Any Temporal SDK can drive a job: Temporal's Python SDK (PyPI temporalio) starts one with the
 * README's input JSON, starts it again with the use-existing conflict policy, queries
 * `progress`, signals `pause` and `resume`, runs the `setUntil` update (one rejected, one
 * accepted) and reads the result, against a real dev server and our worker. The Python side
 * (test/python/drive_job.py) knows only the README's names; this side checks what it saw.
 */
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { test } from 'node:test';
import type { CurriculumResult, Progress } from '../../src/shared/types';
import { pythonWithSafetensors, ROOT, sharedServer } from '../helpers';

const env = sharedServer('python-sdk', 'python-sdk');

interface Seen {
  runId: string;
  useExistingRunId: string;
  paused: Progress;
  setUntilRejected: string | null;
  setUntilAccepted: string;
  afterUpdate: Progress;
  resumed: Progress;
  result: CurriculumResult;
  final: Progress;
}

/** Runs drive_job.py (asynchronously: the worker and the server live in this process's children). */
function drive(job: string): Promise<Seen> {
  const py = spawn(
    pythonWithSafetensors(),
    [path.join(ROOT, 'test', 'python', 'drive_job.py'), env.srv.address, env.queue, env.runs, job],
    { cwd: ROOT, stdio: ['ignore', 'pipe', 'pipe'] },
  );
  let out = '';
  let err = '';
  py.stdout.on('data', (b: Buffer) => void (out += b.toString()));
  py.stderr.on('data', (b: Buffer) => void (err += b.toString()));
  return new Promise((resolve, reject) => {
    py.once('error', reject);
    py.once('exit', (code) => {
      if (code !== 0) reject(new Error(`drive_job.py exited ${code}: ${err.slice(-4000)}`));
      else resolve(JSON.parse(out) as Seen);
    });
  });
}

test('the Python SDK drives a job with the README JSON: start, use-existing, progress, pause/resume, setUntil, result', async () => {
  const job = 'python-sdk-job';
  const seen = await drive(job);
  // Started again with USE_EXISTING: attached to the same run.
  assert.ok(seen.runId);
  assert.equal(seen.useExistingRunId, seen.runId, 'use-existing returns the running execution');
  // Paused before any stage finished; progress documents the plan.
  assert.equal(seen.paused.state, 'paused');
  assert.equal(seen.paused.jobName, job);
  assert.equal(seen.paused.stage, '3s');
  assert.deepEqual(seen.paused.stages, ['3s', '9s', '18s', '30s', '63s']);
  assert.equal(seen.paused.until, '63s');
  assert.deepEqual(seen.paused.completed, []);
  // setUntil: a name that is not a stage is rejected with the reason; a later stage is accepted.
  assert.match(seen.setUntilRejected ?? 'accepted', /"99s" is not a stage of this curriculum; use one of 3s, 9s/);
  assert.equal(seen.setUntilAccepted, '9s');
  assert.equal(seen.afterUpdate.until, '9s');
  assert.equal(seen.afterUpdate.state, 'paused', 'the update does not resume');
  assert.ok(['running', 'completed'].includes(seen.resumed.state));
  // The result: the stages through the new `until`, each with its final checkpoint.
  assert.equal(seen.result.jobName, job);
  assert.equal(seen.result.until, '9s');
  assert.deepEqual(
    seen.result.stages.map((s) => [s.stage, s.steps]),
    [
      ['3s', 4],
      ['9s', 4],
    ],
  );
  for (const s of seen.result.stages) {
    assert.ok(fs.existsSync(path.join(s.finalCheckpoint, 'model.safetensors')), `${s.stage}: model.safetensors`);
    assert.ok(fs.existsSync(path.join(s.finalCheckpoint, 'state.json')), `${s.stage}: state.json`);
    assert.match(s.modelSha256, /^[0-9a-f]{64}$/);
  }
  assert.equal(seen.final.state, 'completed');
  assert.deepEqual(
    seen.final.completed.map((s) => s.stage),
    ['3s', '9s'],
  );
});
