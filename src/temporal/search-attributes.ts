/**
 * The job search attributes (TrainingJob, TrainingStage, TrainingStep) must exist in the
 * namespace before a workflow upserts them; otherwise every workflow task fails. Workers register
 * them at start where the server allows it, and each job's plan records whether they exist, so
 * that a job never upserts attributes the namespace lacks.
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

type OperatorService = Pick<NativeConnection['operatorService'], 'listSearchAttributes' | 'addSearchAttributes'>;

/** Where the namespace stands: every attribute exists ('present'), none can be had ('unavailable'). */
export type SearchAttributesState = 'present' | 'registered' | 'unavailable';

let warned = false;

/**
 * Makes sure the job search attributes exist: registers the missing ones through the operator
 * service where the server allows it (a dev or self-hosted server); where it does not (a hosted
 * namespace without that permission), warns once with the commands that create them and reports
 * 'unavailable': jobs then run without search attributes. An attribute that exists with another
 * type cannot be fixed here and is a UserError.
 */
export async function ensureSearchAttributes(
  ops: OperatorService,
  namespace: string,
  opts: { register?: boolean } = {},
): Promise<SearchAttributesState> {
  const missing = await missingSearchAttributes(ops, namespace);
  if (missing === undefined) return unavailable(namespace, 'cannot list search attributes');
  if (missing.length === 0) return 'present';
  if (opts.register === false)
    return unavailable(namespace, `${missing.map((k) => k.name).join(', ')} missing (--no-register-search-attributes)`);
  try {
    const searchAttributes = Object.fromEntries(
      missing.map((k) => [k.name, k.type === 'INT' ? IVT.INDEXED_VALUE_TYPE_INT : IVT.INDEXED_VALUE_TYPE_KEYWORD]),
    );
    await ops.addSearchAttributes({ namespace, searchAttributes });
  } catch (e) {
    return unavailable(namespace, `cannot register ${missing.map((k) => k.name).join(', ')}: ${(e as Error).message}`);
  }
  logger.info({ namespace, registered: missing.map((k) => k.name) }, 'registered the job search attributes');
  return 'registered';
}

/** True when every job search attribute exists with its type (what a job's plan records). */
export async function searchAttributesExist(ops: OperatorService, namespace: string): Promise<boolean> {
  return (await missingSearchAttributes(ops, namespace))?.length === 0;
}

/** The attributes that do not exist; undefined when they cannot be listed; a UserError for a wrong type. */
async function missingSearchAttributes(
  ops: OperatorService,
  namespace: string,
): Promise<(typeof SEARCH_ATTRIBUTES)[number][] | undefined> {
  let custom: Record<string, temporal.api.enums.v1.IndexedValueType>;
  try {
    const res = await ops.listSearchAttributes({ namespace });
    custom = (res.customAttributes ?? {}) as Record<string, temporal.api.enums.v1.IndexedValueType>;
  } catch {
    return undefined;
  }
  const wanted = (k: (typeof SEARCH_ATTRIBUTES)[number]) =>
    k.type === 'INT' ? IVT.INDEXED_VALUE_TYPE_INT : IVT.INDEXED_VALUE_TYPE_KEYWORD;
  const mistyped = SEARCH_ATTRIBUTES.filter((k) => custom[k.name] !== undefined && custom[k.name] !== wanted(k));
  if (mistyped.length > 0)
    throw new UserError(
      `the job search attributes have the wrong type in namespace ${namespace}: ${mistyped.map((k) => `${k.name} has type ${IVT[custom[k.name]!]}, expected ${k.type}`).join(', ')}`,
      {
        kind: 'SearchAttributesMissing',
        fix: `remove them (temporal operator search-attribute remove --name NAME) and let a worker register them, or create them by hand: ${createSearchAttributeCommands(namespace).join(' && ')}`,
      },
    );
  return SEARCH_ATTRIBUTES.filter((k) => custom[k.name] === undefined);
}

function unavailable(namespace: string, why: string): 'unavailable' {
  if (!warned)
    logger.warn(
      { namespace, why, commands: createSearchAttributeCommands(namespace) },
      'the job search attributes TrainingJob, TrainingStage and TrainingStep are not available: jobs run without them (no listing by stage or step); an operator can create them with the commands shown',
    );
  warned = true;
  return 'unavailable';
}
