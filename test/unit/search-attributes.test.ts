/** ensureSearchAttributes against a stand-in operator service: present, registered, unavailable, mistyped. */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { temporal } from '@temporalio/proto';
import { UserError } from '../../src/errors';
import { ensureSearchAttributes, searchAttributesExist } from '../../src/temporal/search-attributes';

const IVT = temporal.api.enums.v1.IndexedValueType;
type Attrs = Record<string, temporal.api.enums.v1.IndexedValueType>;

function operator(existing: Attrs, opts: { listFails?: boolean; addFails?: boolean } = {}) {
  const added: Attrs[] = [];
  const ops = {
    listSearchAttributes: async () => {
      if (opts.listFails) throw new Error('PERMISSION_DENIED: list');
      return { customAttributes: { ...existing } };
    },
    addSearchAttributes: async (req: { searchAttributes?: Attrs | null }) => {
      if (opts.addFails) throw new Error('PERMISSION_DENIED: add');
      added.push(req.searchAttributes ?? {});
      Object.assign(existing, req.searchAttributes);
      return {};
    },
  };
  return { ops: ops as unknown as Parameters<typeof ensureSearchAttributes>[0], added };
}

const ALL: Attrs = {
  TrainingJob: IVT.INDEXED_VALUE_TYPE_KEYWORD,
  TrainingStage: IVT.INDEXED_VALUE_TYPE_KEYWORD,
  TrainingStep: IVT.INDEXED_VALUE_TYPE_INT,
};

test('present attributes are left alone; missing ones are registered with their types', async () => {
  const full = operator({ ...ALL });
  assert.equal(await ensureSearchAttributes(full.ops, 'default'), 'present');
  assert.deepEqual(full.added, []);
  const some = operator({ TrainingJob: IVT.INDEXED_VALUE_TYPE_KEYWORD, Other: IVT.INDEXED_VALUE_TYPE_TEXT });
  assert.equal(await searchAttributesExist(some.ops, 'default'), false);
  assert.equal(await ensureSearchAttributes(some.ops, 'default'), 'registered');
  assert.deepEqual(some.added, [
    { TrainingStage: IVT.INDEXED_VALUE_TYPE_KEYWORD, TrainingStep: IVT.INDEXED_VALUE_TYPE_INT },
  ]);
  assert.equal(await searchAttributesExist(some.ops, 'default'), true);
});

test('a server that refuses listing or adding, or a worker told not to register: unavailable, not an error', async () => {
  assert.equal(await ensureSearchAttributes(operator({}, { addFails: true }).ops, 'ns'), 'unavailable');
  assert.equal(await ensureSearchAttributes(operator({}, { listFails: true }).ops, 'ns'), 'unavailable');
  assert.equal(await searchAttributesExist(operator({}, { listFails: true }).ops, 'ns'), false);
  const quiet = operator({});
  assert.equal(await ensureSearchAttributes(quiet.ops, 'ns', { register: false }), 'unavailable');
  assert.deepEqual(quiet.added, []);
});

test('an attribute with the wrong type is a user error naming it and the fix', async () => {
  const wrong = operator({ ...ALL, TrainingStep: IVT.INDEXED_VALUE_TYPE_KEYWORD });
  await assert.rejects(
    () => ensureSearchAttributes(wrong.ops, 'default'),
    (e: unknown) =>
      e instanceof UserError &&
      /TrainingStep has type INDEXED_VALUE_TYPE_KEYWORD, expected INT/.test(e.message) &&
      /Fix: remove them/.test(e.message),
  );
});
