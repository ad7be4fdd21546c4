/**
 * Errors a user can fix (bad config, bad job name, missing dataset). They say what was
 * wrong, where, and what to do. Activities turn them into non-retryable Temporal failures;
 * every other error is retried.
 */
import { USER_ERROR_KINDS, type UserErrorKind } from './shared/error-kinds';

export { USER_ERROR_KINDS, type UserErrorKind } from './shared/error-kinds';

export class UserError extends Error {
  /** Where the problem is: a file, a config field, a job name. */
  readonly where: string | undefined;
  /** What the user should do about it. */
  readonly fix: string | undefined;
  /** A stable machine-readable kind, used as the Temporal failure type. */
  readonly kind: UserErrorKind;

  constructor(message: string, opts: { where?: string; fix?: string; kind?: UserErrorKind } = {}) {
    const full = [opts.where ? `${opts.where}: ${message}` : message, opts.fix ? `Fix: ${opts.fix}` : '']
      .filter(Boolean)
      .join('. ');
    super(full);
    this.name = 'UserError';
    this.where = opts.where;
    this.fix = opts.fix;
    this.kind = opts.kind ?? 'UserError';
  }
}

/** A configuration that failed validation; lists every problem found, not just the first. */
export class ConfigError extends UserError {
  readonly problems: ConfigProblem[];
  constructor(problems: ConfigProblem[]) {
    super(problems.map(formatProblem).join('\n'), { kind: 'ConfigError' });
    this.name = 'ConfigError';
    this.problems = problems;
  }
}

export interface ConfigProblem {
  /** The config file (or "--set"/"input.set" for overrides). */
  file: string;
  /** Dotted field name, e.g. "training.steps". */
  field: string;
  /** The offending value, if any. */
  value?: unknown;
  /** What is wrong. */
  message: string;
  /** What to do. */
  fix: string;
}

export function formatProblem(p: ConfigProblem): string {
  const value = p.value === undefined ? '' : ` = ${JSON.stringify(p.value)}`;
  return `${p.file}: ${p.field}${value}: ${p.message}. Fix: ${p.fix}`;
}

/** A kind named in a message (e.g. from a training process): itself when it is one of USER_ERROR_KINDS, else "UserError". */
export function asUserErrorKind(kind: string): UserErrorKind {
  return (USER_ERROR_KINDS as readonly string[]).includes(kind) ? (kind as UserErrorKind) : 'UserError';
}

export function isUserError(e: unknown): e is UserError {
  return e instanceof UserError;
}
