/**
 * What this project knows about each checkpoint layout of an external engine, in one place: the
 * layout reader (types.ts: CheckpointLayout), where the trainer's progress comes from, and the
 * parser of progress from log lines; and about each config format, the writer of the stage config
 * file that {config} names (a preset's config_format, by default its checkpoint_layout's).
 *
 * "ours" is our own checkpoint store (src/engine/ours.ts); "ttt-video-dit" is TTT-Video-DiT's DCP
 * step folders under `<run>/checkpoint/` (src/engine/ttt-video-dit/: its layout reader and its TOML
 * writer), with progress from its log lines (src/engine/log-progress.ts).
 */
import * as path from 'node:path';
import type { StageConfig } from '../config/schema';
import { ConfigError } from '../errors';
import { parseProgressLine, TTT_VIDEO_DIT_PROGRESS_PATTERN } from './log-progress';
import { oursLayout, oursStageToml } from './ours';
import { tttVideoDitToml } from './ttt-video-dit/config';
import { TTT_CHECKPOINT_SUBDIR, tttVideoDitLayout } from './ttt-video-dit/layout';
import type { CheckpointLayout, ConfigFormat, LogProgress } from './types';

export type LayoutName = CheckpointLayout['name'];

export interface LayoutSupport {
  layout: CheckpointLayout;
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
  ours: { layout: oursLayout, progress: 'metrics' },
  // Resuming: the runner moves torn step folders aside before each start and the preset passes
  // --checkpoint.resume, so TTT-Video-DiT's own choice (the newest step-N) is a complete one.
  'ttt-video-dit': {
    layout: tttVideoDitLayout,
    progress: 'output',
    defaultProgressPattern: TTT_VIDEO_DIT_PROGRESS_PATTERN.source,
    stepsDir: (run) => path.join(run, TTT_CHECKPOINT_SUBDIR),
  },
};

/**
 * The stage config in a trainer's format: the file that {config} names. `stageFile` names the stage
 * config in problems; `tttVideoDitTrainer`: the trainer is TTT-Video-DiT's train.py itself
 * (preset.ts: isTttVideoDitTrainer), so what it cannot train as configured is a ConfigError.
 */
export type ConfigWriter = (config: StageConfig, o: { stageFile: string; tttVideoDitTrainer: boolean }) => string;

export const CONFIG_WRITERS: Record<ConfigFormat, ConfigWriter> = {
  ours: (c) => oursStageToml(c),
  'ttt-video-dit': (c, o) => tttVideoDitToml(c, { file: o.stageFile, trainPy: o.tttVideoDitTrainer }),
};

/**
 * Progress from a trainer's output line (log-progress.ts: a regular expression with the named
 * groups step, loss and grad_norm; loss and grad_norm may be absent). An object, so that tests can
 * stand in for it.
 */
export const logProgress: { parse: (line: string, pattern: string) => LogProgress | null } = {
  parse: parseProgressLine,
};

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
