/** The contract of a launcher (see index.ts). */
import type { Logger } from '../../log';
import type { LauncherSettings, LauncherState, ShardProgress } from '../../shared/types';
import type { CommandShard } from '../../engine/command';
import type { CheckpointSaved, ShardRequest, ShardResult } from '../shard-types';

export interface ShardLaunch {
  /** The job's name: a Slurm job is named <jobName>.<stage>. */
  jobName: string;
  stage: string;
  totalSteps: number;
  request: ShardRequest;
  /**
   * An external engine's trainer (src/engine/command.ts), run through the engine runner; absent: the
   * built-in trainer runs `request`. Either way `request` carries the job folder and the shard's bounds.
   */
  command?: CommandShard;
}

export interface LaunchOptions {
  onProgress?: (p: ShardProgress) => void;
  onCheckpoint?: (c: CheckpointSaved) => void;
  /** Where the shard runs, whenever that changes (a Slurm job's id and state). */
  onState?: (s: LauncherState) => void;
  /** Aborting asks the shard to save a checkpoint and end (pause, cancel); the run then resolves with its result. */
  stop?: AbortSignal;
  /**
   * Aborting ends this supervision (the worker shuts down, or Temporal gave the attempt up). A local
   * shard stops as on `stop`; a Slurm job keeps running for the next attempt to re-attach to, and the
   * run rejects with DetachedError.
   */
  detach?: AbortSignal;
  /**
   * Laid over this process's environment for the trainer: a local child's environment, or the one
   * sbatch exports into a Slurm job. A key set to undefined is left out (e.g. withoutTemporalSettings()).
   */
  env?: NodeJS.ProcessEnv;
  log: Logger;
}

export interface Launcher {
  readonly kind: LauncherSettings['kind'];
  run(launch: ShardLaunch, opts: LaunchOptions): Promise<ShardResult>;
}

/** Supervision ended while the shard goes on running elsewhere (a Slurm job). Retryable: the next attempt re-attaches. */
export class DetachedError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'DetachedError';
  }
}
