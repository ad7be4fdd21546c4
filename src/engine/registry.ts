/**
 * What this project knows about each checkpoint layout of an external engine, in one place: the
 * layout reader (types.ts: CheckpointLayout), the writer of the stage config file that {config}
 * names, where the trainer's progress comes from, and the parser of progress from log lines.
 *
 * "ours" is built in. "ttt-video-dit" plugs in here (src/engine/ttt-video-dit/: its DCP layout
 * reader and its TOML writer; src/engine/log-progress.ts: its log-line parser and default pattern):
 *
 *   LAYOUTS['ttt-video-dit'] = { layout: tttVideoDitLayout, writeConfig: tttVideoDitToml,
 *     stepsDir: (run) => path.join(run, 'checkpoint'), progress: 'output', defaultProgressPattern: DEFAULT_PATTERN };
 *   logProgress.parse = parseProgressLine;
 *
 * Until then a preset with checkpoint_layout = "ttt-video-dit" is refused at planning.
 */
import type { StageConfig } from '../config/schema';
import { ConfigError } from '../errors';
import { oursLayout, oursStageToml } from './ours';
import type { CheckpointLayout, LogProgress } from './types';

export type LayoutName = CheckpointLayout['name'];

export interface LayoutSupport {
  layout: CheckpointLayout;
  /** The stage config in the trainer's own format: the file that {config} names. */
  writeConfig(config: StageConfig): string;
  /**
   * Where its progress comes from: "metrics" = the trainer writes the stage's metrics.jsonl itself
   * (ours); "output" = its output lines, parsed with the preset's progress_pattern (or
   * defaultProgressPattern) and written to metrics.jsonl by the engine runner.
   */
  progress: 'metrics' | 'output';
  defaultProgressPattern?: string;
  /**
   * The folder (from the run folder) that holds its step folders. Before a trainer starts, step
   * folders there newer than the latest complete checkpoint (torn saves) are moved aside, so that a
   * trainer that resumes from the highest step number it finds resumes from a complete one.
   * Absent: the trainer skips torn checkpoints itself (ours).
   */
  stepsDir?: (runDir: string) => string;
}

export const LAYOUTS: Partial<Record<LayoutName, LayoutSupport>> = {
  ours: { layout: oursLayout, writeConfig: oursStageToml, progress: 'metrics' },
};

/**
 * Progress from a trainer's output line, for layouts whose progress is "output". The default reads
 * a regular expression with the named groups step, loss and grad_norm (loss and grad_norm may be
 * absent); engine-ttt's parseProgressLine replaces it.
 */
export const logProgress: { parse: (line: string, pattern: string) => LogProgress | null } = {
  parse: parseNamedGroups,
};

const patterns = new Map<string, RegExp>();

export function parseNamedGroups(line: string, pattern: string): LogProgress | null {
  let re = patterns.get(pattern);
  if (!re) {
    re = new RegExp(pattern);
    patterns.set(pattern, re);
  }
  const g = re.exec(line)?.groups;
  if (!g || g.step === undefined) return null;
  const num = (s: string | undefined): number | null => {
    if (s === undefined) return null;
    const n = Number(s);
    return Number.isFinite(n) ? n : null;
  };
  const step = num(g.step);
  if (step === null || !Number.isInteger(step)) return null;
  return { step, loss: num(g.loss), gradNorm: num(g.grad_norm) };
}

/** The support of a layout; a ConfigError naming the preset when this build has none. */
export function layoutSupport(name: LayoutName, where: { file: string; field: string }): LayoutSupport {
  const s = LAYOUTS[name];
  if (s) return s;
  throw new ConfigError([
    {
      ...where,
      value: name,
      message: `this build of ttt-curriculum cannot read checkpoints in the ${name} layout`,
      fix: `use a build that has it (available here: ${Object.keys(LAYOUTS).join(', ')})`,
    },
  ]);
}
