/**
 * Where a shard runs: a Launcher runs one shard attempt and reports its progress and result.
 *
 *   local  a child process of this worker (supervise.ts); it dies with the worker
 *   slurm  a batch job that this worker submits, or finds already running and re-attaches to;
 *          it outlives the worker, and the stage's lease fences it
 *
 * The trainShard activity picks one from the plan (PlannedStage.launcher) and does not otherwise
 * know which: both resume from the stage's latest complete checkpoint and report the same
 * ShardProgress and ShardResult.
 */
import type { LauncherSettings } from '../../shared/types';
import { LocalLauncher } from './local';
import { SlurmLauncher } from './slurm';
import type { Launcher } from './types';

export { DetachedError, type LaunchOptions, type Launcher, type ShardLaunch } from './types';

/** The launcher of a planned stage; plans made before launchers existed run locally. */
export function launcherFor(settings: LauncherSettings | undefined): Launcher {
  return settings?.kind === 'slurm' ? new SlurmLauncher(settings) : new LocalLauncher(settings?.maxFailedStarts);
}
