import { UserError } from './errors';

/** Job names become workflow IDs and folder names: letters, digits, '.', '_' and '-', 1-100 chars. */
const JOB_NAME = /^[A-Za-z0-9][A-Za-z0-9._-]{0,99}$/;

/** Validates a job name before any path is built from it. Throws a UserError explaining the rule. */
export function validateJobName(name: unknown): string {
  if (typeof name !== 'string' || !JOB_NAME.test(name) || name.includes('..')) {
    throw new UserError(`invalid job name ${JSON.stringify(name)}`, {
      where: 'jobName',
      kind: 'InvalidJobName',
      fix: 'use 1-100 characters from letters, digits, ".", "_" and "-", starting with a letter or digit, without ".." or path separators',
    });
  }
  return name;
}
