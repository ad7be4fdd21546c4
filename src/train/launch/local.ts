/**
 * The local launcher: the shard runs in a child process of this worker (supervise.ts) and dies with
 * it: the built-in trainer (child.js), or the engine runner (src/engine/child.ts) that runs an
 * external engine's trainer and kills it when it dies itself.
 */
import { ENGINE_CHILD, runnerSpec } from '../../engine/runner';
import type { ShardResult } from '../shard-types';
import { superviseShard } from '../supervise';
import type { LaunchOptions, Launcher, ShardLaunch } from './types';

/** Failed starts of an external trainer in a row before a stage fails, when the plan says nothing (launcher.max_failed_starts). */
const DEFAULT_MAX_FAILED_STARTS = 3;

export class LocalLauncher implements Launcher {
  readonly kind = 'local';

  constructor(private readonly maxFailedStarts = DEFAULT_MAX_FAILED_STARTS) {}

  run(launch: ShardLaunch, opts: LaunchOptions): Promise<ShardResult> {
    // The child must not outlive this attempt, so detaching stops it too.
    const signals = [opts.stop, opts.detach].filter((s): s is AbortSignal => s !== undefined);
    const { command } = launch;
    return superviseShard(launch.request, {
      signal: signals.length > 0 ? AbortSignal.any(signals) : undefined,
      onProgress: opts.onProgress,
      onCheckpoint: opts.onCheckpoint,
      env: opts.env,
      ...(command
        ? {
            entry: {
              script: ENGINE_CHILD,
              arg: JSON.stringify(runnerSpec({ ...launch, command }, { maxFailedStarts: this.maxFailedStarts })),
            },
            // The runner enforces the preset's grace itself (then SIGTERM, SIGKILL); this is the last resort.
            stopGraceSeconds: command.stop.graceSeconds + 60,
          }
        : {}),
    });
  }
}
