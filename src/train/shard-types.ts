/** The inputs, callbacks and outcome of one training shard (see shard.ts). */
import type { SaveHooks } from '../checkpoint/store';
import type { Overrides } from '../config/load';
import type { ShardProgress, ShardSummary } from '../shared/types';

export type { ShardProgress };

export interface ShardRequest {
  /** Stage config file and overrides (the same ones the workflow validated). */
  configFile: string;
  overrides: Overrides;
  /** Absolute job folder: dump_folder/<job name>. */
  jobDir: string;
  /** Weights for step 0 when the stage has no checkpoint yet: a weights folder, or null for a fresh initialisation. */
  initFrom: string | null;
  /** Bounds of this shard (default: the config's shard.max_steps / shard.max_seconds). */
  maxSteps?: number;
  maxSeconds?: number;
  /** Refuse to run if the config no longer has this hash (edited under a running job). */
  expectedConfigHash?: string;
  /** Who writes, for the stage's lease (e.g. the workflow and activity attempt). */
  who?: string;
  /** Bound into every log line of the shard (default job: the job folder's name). */
  logContext?: { job?: string; attempt?: number; slurmJob?: string };
}

/** A shard's outcome: where the stage stands (the summary that goes to the workflow). */
export type ShardResult = ShardSummary;

/** A saved checkpoint: where, which step, how long the save took and how many bytes it wrote. */
export interface CheckpointSaved {
  dir: string;
  step: number;
  seconds: number;
  bytes: number;
}

/** Callbacks of a running shard (the training child wires them to its line protocol). */
export interface ShardControl {
  onProgress?: (p: ShardProgress) => void;
  onCheckpoint?: (c: CheckpointSaved) => void;
  /** Checked between steps: true = save a checkpoint and return now. */
  shouldStop?: () => boolean;
  /** Called right before each write of the shard (metrics line, checkpoint); may end the process. */
  beforeWrite?: () => void;
  saveHooks?: SaveHooks;
}
