/**
 * The job search attributes (TrainingJob, TrainingStage, TrainingStep) must exist in the
 * namespace before a workflow upserts them; otherwise every workflow task fails. Workers check
 * at start and refuse to run with the commands that create them.
 */
import type { NativeConnection } from '@temporalio/worker';
import { temporal } from '@temporalio/proto';
import { UserError } from '../errors';
import { logger } from '../log';
import { SEARCH_ATTRIBUTES } from '../../workflows/definitions';

const IVT = temporal.api.enums.v1.IndexedValueType;

/**
 * The `temporal operator search-attribute create` commands for a namespace, one per attribute
 * (temporal CLI 1.9 creates only the first of several --name flags).
 */
export function createSearchAttributeCommands(namespace: string): string[] {
  const ns = namespace === 'default' ? '' : ` --namespace ${namespace}`;
  return SEARCH_ATTRIBUTES.map(
    (k) =>
      `temporal operator search-attribute create${ns} --name ${k.name} --type ${k.type === 'INT' ? 'Int' : 'Keyword'}`,
  );
}

/** Throws a UserError naming the missing (or mistyped) attributes and the commands that create them. */
export async function checkSearchAttributes(connection: NativeConnection, namespace: string): Promise<void> {
  let custom: Record<string, temporal.api.enums.v1.IndexedValueType>;
  try {
    const res = await connection.operatorService.listSearchAttributes({ namespace });
    custom = (res.customAttributes ?? {}) as Record<string, temporal.api.enums.v1.IndexedValueType>;
  } catch (e) {
    // Some hosted setups do not let workers list search attributes; the workflow then fails loudly if they are missing.
    logger.warn(
      { err: e, namespace },
      'cannot list search attributes; assuming TrainingJob, TrainingStage and TrainingStep exist',
    );
    return;
  }
  const problems = SEARCH_ATTRIBUTES.filter(
    (k) => custom[k.name] !== (k.type === 'INT' ? IVT.INDEXED_VALUE_TYPE_INT : IVT.INDEXED_VALUE_TYPE_KEYWORD),
  ).map((k) =>
    custom[k.name] === undefined
      ? `${k.name} (${k.type}) is missing`
      : `${k.name} has type ${IVT[custom[k.name]!]}, expected ${k.type}`,
  );
  if (problems.length > 0) {
    throw new UserError(`the job search attributes are not set up in namespace ${namespace}: ${problems.join(', ')}`, {
      kind: 'SearchAttributesMissing',
      fix: `create them once per namespace: ${createSearchAttributeCommands(namespace).join(' && ')} (local dev servers started by ttt-curriculum register them)`,
    });
  }
}
