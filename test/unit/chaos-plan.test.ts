/** The pure parts of `npm run chaos` (bench/chaos.ts): the seeded kill plan and the count of redone steps. */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { judgeKills, type KillRecord, planKills, redoneSteps } from '../../bench/chaos';

const TINY = [
  { name: '3s', steps: 40, interval: 10 },
  { name: '9s', steps: 12, interval: 4 },
  { name: '18s', steps: 8, interval: 4 },
  { name: '30s', steps: 6, interval: 3 },
  { name: '63s', steps: 4, interval: 2 },
];

test('the kill plan is seeded, in curriculum order, distinct, with write kills on checkpoint steps and no plain kill on a last step', () => {
  for (const seed of [1, 2, 7, 12345]) {
    const plan = planKills(TINY, 10, 4, seed);
    assert.deepEqual(planKills(TINY, 10, 4, seed), plan, 'same seed, same plan');
    assert.equal(plan.length, 10);
    assert.equal(plan.filter((k) => k.kind === 'write').length, 4);
    const pos = plan.map((k) => k.stageIndex * 1000 + k.step);
    assert.deepEqual(
      pos,
      [...pos].sort((a, b) => a - b),
      'in curriculum order',
    );
    assert.equal(new Set(pos).size, pos.length, 'distinct moments');
    for (const k of plan) {
      const s = TINY[k.stageIndex]!;
      if (k.kind === 'write')
        assert.ok(k.step % s.interval === 0 || k.step === s.steps, `${k.stage}@${k.step} is a checkpoint step`);
      else assert.ok(k.step < s.steps && k.step % s.interval !== 0 && k.frac >= 0 && k.frac < 1);
    }
  }
  assert.notDeepEqual(planKills(TINY, 10, 4, 1), planKills(TINY, 10, 4, 2), 'another seed, another plan');
  assert.throws(() => planKills([{ name: '3s', steps: 4, interval: 2 }], 5, 3, 1), /cannot place 5 kills/);
});

test('steps redone are lines for steps already trained; missing steps are listed', () => {
  assert.deepEqual(redoneSteps([1, 2, 3, 4, 5, 6, 7, 4, 5, 6, 7, 8], 8), { redone: 4, missing: [] });
  assert.deepEqual(redoneSteps([1, 2, 4], 4), { redone: 0, missing: [3] });
});

test('a kill counts as survived only if the worker died of SIGKILL and another worker completed a trainShard after it', () => {
  const judge = (exitSignal: string | null, completions: { atMs: number; identity: string }[]): boolean | undefined => {
    const r: KillRecord = { kind: 'step', stage: '3s', step: 3, at: 0, workerPid: 10, exitSignal };
    judgeKills([r], [1000], completions);
    return r.survived;
  };
  assert.equal(judge('SIGKILL', [{ atMs: 1500, identity: '11@host' }]), true);
  assert.equal(judge('SIGKILL', [{ atMs: 1500, identity: '10@host' }]), false, 'completed by the killed worker');
  assert.equal(judge('SIGKILL', [{ atMs: 900, identity: '11@host' }]), false, 'nothing completed after the kill');
  assert.equal(judge(null, [{ atMs: 1500, identity: '11@host' }]), false, 'the worker did not die of the kill');
  assert.equal(judge('SIGKILL', []), false);
});
