/**
 * The seams of an external training engine (issue 14): how its checkpoints are laid out and how
 * its progress is read from its output. The built-in engine (tfjs) needs neither: its shard
 * reports progress over the child protocol and its checkpoints are ours (src/checkpoint/store.ts).
 */

/** A checkpoint that an external trainer wrote completely. */
export interface CompleteCheckpoint {
  /** Optimizer steps done when it was written. */
  step: number;
  /** Its folder: what the next stage's init_state_dir points to. */
  dir: string;
}

/** How an external trainer lays out its checkpoints ("ours" or "ttt-video-dit"). */
export interface CheckpointLayout {
  readonly name: 'ours' | 'ttt-video-dit';
  /**
   * The latest complete checkpoint under the trainer's experiment folder (`{dump_folder}/{exp_name}`),
   * or null when there is none. Torn or half-written ones are never returned.
   */
  latestComplete(runDir: string): CompleteCheckpoint | null;
}

/** The formats of the stage config file written for an external trainer ({config}). */
export const CONFIG_FORMATS = ['ours', 'ttt-video-dit'] as const;
export type ConfigFormat = (typeof CONFIG_FORMATS)[number];

/** One progress report read from a trainer's output line. */
export interface LogProgress {
  step: number;
  loss: number | null;
  gradNorm: number | null;
}
