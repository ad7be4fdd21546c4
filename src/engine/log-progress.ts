/**
 * Progress read from an external trainer's output lines, through a regular expression with named
 * groups: `step` (required: optimizer steps done), `loss` and `grad_norm` (optional: a group that
 * is absent from the pattern, or did not take part in the match, reads as null).
 */
import { ConfigError } from '../errors';
import type { LogProgress } from './types';

/** A float as Python prints it with `{:.8f}` or `{}`: digits, exponent, or nan / inf / -inf. */
const FLOAT = String.raw`[-+]?(?:\d+(?:\.\d*)?(?:[eE][-+]?\d+)?|\.\d+(?:[eE][-+]?\d+)?|nan|inf)`;

/**
 * TTT-Video-DiT's progress line (ttt/infra/train_iterator.py `TrainingIterator._print_progress`,
 * metrics added in train.py in the order loss, lr, dataloader time, grad_norm), as its logger
 * prints it (ttt/infra/logging.py `init_logger`: "%(asctime)s - %(name)s - %(levelname)s -
 * %(message)s"), possibly behind torchrun's "[default0]:" prefix:
 *
 *   2025-03-01 12:00:00,000 - root - INFO - cogvideo-mlp-3s: Steps 120/5000 | <s/iter: 41.23s | est: 2 days, 7:50:00> | Metrics: loss: 0.12345678, lr: 0.00001000, dataloader time: 0.00123456, grad_norm: 0.05432100
 *
 * `Steps N/T` counts the steps done. The first line of a run (N = the start step) has no
 * metrics yet: loss and grad_norm are null there.
 */
export const TTT_VIDEO_DIT_PROGRESS_PATTERN = new RegExp(
  String.raw`(?:^|[\s:])Steps (?<step>\d+)/\d+\b` +
    String.raw`(?:.*?\| Metrics: (?:loss: (?<loss>${FLOAT}))?(?:.*?\bgrad_norm: (?<grad_norm>${FLOAT}))?)?`,
);

/**
 * Patterns a preset's `progress_pattern` may name instead of spelling them out: a trainer of ours
 * that logs as TTT-Video-DiT does (e.g. test/fixtures/ddp_train.py) sets progress_pattern =
 * "ttt-video-dit". A name is never a pattern itself: it has no named group `step`.
 */
export const PROGRESS_PATTERNS: Readonly<Record<string, RegExp>> = {
  'ttt-video-dit': TTT_VIDEO_DIT_PROGRESS_PATTERN,
};

/** A preset's `progress_pattern` as a regular expression's source: a name of PROGRESS_PATTERNS resolved, else as it is. */
export function progressPatternSource(pattern: string): string {
  return Object.hasOwn(PROGRESS_PATTERNS, pattern) ? PROGRESS_PATTERNS[pattern]!.source : pattern;
}

/** A pattern given as text (a preset's `progress_pattern`), checked: it compiles and has a `step` group. */
export function compileProgressPattern(source: string, where = 'progress pattern'): RegExp {
  let re: RegExp;
  try {
    re = new RegExp(source);
  } catch (e) {
    throw new ConfigError([
      {
        file: where,
        field: 'progress_pattern',
        value: source,
        message: `not a regular expression (${(e as Error).message})`,
        fix: 'write a JavaScript regular expression with named groups step, loss and grad_norm',
      },
    ]);
  }
  // An alternative that matches the empty string lists every group of the pattern.
  const groups = new RegExp(`${source}|`).exec('')?.groups ?? {};
  if (!('step' in groups))
    throw new ConfigError([
      {
        file: where,
        field: 'progress_pattern',
        value: source,
        message: 'it has no named group `step`',
        fix: 'capture the steps done as (?<step>\\d+); loss and grad_norm are optional groups',
      },
    ]);
  return re;
}

const compiled = new Map<string, RegExp>();

/** The progress a line reports, or null when the pattern does not match it (or `step` is not a whole number). */
export function parseProgressLine(
  line: string,
  pattern: RegExp | string = TTT_VIDEO_DIT_PROGRESS_PATTERN,
): LogProgress | null {
  let re: RegExp;
  if (typeof pattern === 'string') {
    re = compiled.get(pattern) ?? compileProgressPattern(pattern);
    compiled.set(pattern, re);
  } else {
    re = pattern;
  }
  // A global or sticky pattern would carry lastIndex from one line to the next.
  if (re.global || re.sticky) re.lastIndex = 0;
  const g = re.exec(line)?.groups;
  if (g?.step === undefined || !/^\d+$/.test(g.step)) return null;
  const step = Number(g.step);
  if (!Number.isSafeInteger(step)) return null;
  return { step, loss: pythonFloat(g.loss), gradNorm: pythonFloat(g.grad_norm) };
}

/** A number as Python prints it; nan and inf become NaN and ±Infinity (a non-finite loss is news, not noise). */
function pythonFloat(s: string | undefined): number | null {
  if (s === undefined) return null;
  const t = s.trim().toLowerCase();
  if (t === 'nan' || t === '+nan' || t === '-nan') return Number.NaN;
  if (t === 'inf' || t === '+inf') return Number.POSITIVE_INFINITY;
  if (t === '-inf') return Number.NEGATIVE_INFINITY;
  const n = Number(t);
  return t !== '' && Number.isFinite(n) ? n : null;
}
