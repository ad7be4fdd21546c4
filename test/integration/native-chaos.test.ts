/**
 * chaos.test.ts on the native backend: the same kills (3 SIGKILLed workers, two aimed at
 * checkpoint writes) and a server restart with runtime.backend = "tensorflow" (an explicit choice:
 * a shard fails if tensorflow does not load). Every stage's final model must be byte-identical
 * to an uninterrupted run's on tensorflow.
 */
import assert from 'node:assert/strict';
import * as fs from 'node:fs';
import { test } from 'node:test';
import { formatReport, runChaos } from '../../bench/chaos';
import { nativeSkip } from '../native';

test('chaos on tensorflow: 3 SIGKILLed workers (at least one inside a checkpoint write) and a server restart; finals byte-identical to an uninterrupted run', async (t) => {
  const skip = nativeSkip();
  if (skip) return t.skip(skip);
  const r = await runChaos({
    seed: 11,
    kills: 3,
    writeKills: 2,
    serverRestarts: 1,
    until: '9s',
    backend: 'tensorflow',
    set: { 'training.steps': 12 },
    heartbeatTimeoutSeconds: 4,
    log: () => {},
  });
  const text = formatReport(r);
  t.diagnostic(text);
  assert.equal(r.backend, 'tensorflow');
  assert.equal(r.killsSurvived, 3, text);
  assert.ok(r.writeKillsLanded >= 1, `no kill landed inside a checkpoint write\n${text}`);
  assert.deepEqual(
    r.stages.map((s) => s.stage),
    ['3s', '9s'],
  );
  for (const s of r.stages) {
    assert.ok(s.identical, `${s.stage}: final model differs from the uninterrupted run\n${text}`);
    assert.deepEqual(s.stepsMissing, [], `${s.stage}: steps never trained\n${text}`);
  }
  fs.rmSync(r.dir, { recursive: true, force: true });
});
