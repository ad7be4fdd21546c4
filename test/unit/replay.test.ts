/**
 * Jobs in flight survive a worker upgrade: the recorded histories of test/fixtures/histories/ (real
 * runs of the tiny curriculum, `npm run record-histories`) replay on the current workflow code
 * with the SDK's history replay, without a server. A workflow change that would make a running
 * job's history nondeterministic fails here; it has to go through patched()/deprecatePatch() or
 * worker versioning instead (README, "Upgrading workers under a running job").
 */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { bundleWorkflowCode, Runtime, Worker } from '@temporalio/worker';
import { WORKFLOWS_PATH } from '../../src';
import { installTemporalRuntime } from '../../src/temporal/runtime';
import { FIXTURES, fixtureNames, loadFixture, scenarioOf } from '../histories';

test('the fixture set holds every recorded scenario, each showing what its name says', () => {
  const names = fixtureNames();
  for (const f of FIXTURES) assert.ok(names.includes(f.name), `test/fixtures/histories/${f.name}.json is missing`);
  assert.ok(names.length >= 6, `${names.length} fixtures`);
  for (const name of names) {
    const scenario = scenarioOf(name);
    assert.ok(scenario, `${name}.json: not a recorded scenario (${FIXTURES.map((f) => f.name).join(', ')})`);
    assert.ok(scenario.check(loadFixture(name)), `${name}.json shows ${scenario.shows}`);
  }
});

test('every recorded history replays on the current workflow code without a nondeterminism error', async () => {
  installTemporalRuntime(); // the SDK's logs below WARN stay out of the test output
  const workflowBundle = await bundleWorkflowCode({ workflowsPath: WORKFLOWS_PATH, logger: Runtime.instance().logger });
  const names = fixtureNames();
  const histories = names.map((name) => ({ workflowId: name, history: loadFixture(name) }));
  const replayed: string[] = [];
  const failed: string[] = [];
  for await (const r of Worker.runReplayHistories({ workflowBundle }, histories)) {
    replayed.push(r.workflowId);
    if (r.error) failed.push(`${r.workflowId}: ${r.error.name}: ${r.error.message}`);
  }
  assert.deepEqual(failed, [], 'these running jobs would break on the new workflow code');
  assert.deepEqual(replayed, names);
});
