/**
 * `npm run chaos` in small: the same code (bench/chaos.ts) with 3 worker kills, two of them
 * aimed at checkpoint writes (at least one must land inside one), and one Temporal server restart, on the first two tiny stages with
 * 12 steps each. Every stage's final model must be byte-identical to an uninterrupted run's.
 */
import assert from 'node:assert/strict';
import * as fs from 'node:fs';
import { test } from 'node:test';
import { formatReport, runChaos } from '../../bench/chaos';

test('chaos: 3 SIGKILLed workers (at least one inside a checkpoint write) and a server restart; finals byte-identical to an uninterrupted run', async (t) => {
  const r = await runChaos({
    seed: 7,
    kills: 3,
    writeKills: 2,
    serverRestarts: 1,
    until: '9s',
    set: { 'training.steps': 12 },
    heartbeatTimeoutSeconds: 4,
    log: () => {},
  });
  const text = formatReport(r);
  t.diagnostic(text);
  // Survived is observed per kill: the worker died of SIGKILL, and another worker completed a
  // trainShard after it (the history names the completing worker).
  assert.deepEqual(
    r.kills.map((k) => [k.exitSignal, k.survived]),
    [
      ['SIGKILL', true],
      ['SIGKILL', true],
      ['SIGKILL', true],
    ],
    text,
  );
  assert.equal(r.killsSurvived, 3, text);
  assert.equal(r.serverRestarts, 1, text);
  assert.ok(r.writeKillsLanded >= 1, `no kill landed inside a checkpoint write\n${text}`);
  assert.deepEqual(
    r.stages.map((s) => s.stage),
    ['3s', '9s'],
  );
  for (const s of r.stages) {
    assert.ok(s.identical, `${s.stage}: final model differs from the uninterrupted run\n${text}`);
    assert.deepEqual(s.stepsMissing, [], `${s.stage}: steps never trained\n${text}`);
  }
  assert.ok(r.equal);
  fs.rmSync(r.dir, { recursive: true, force: true });
});
