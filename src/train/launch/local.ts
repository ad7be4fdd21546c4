/** The local launcher: the shard runs in a child process of this worker (supervise.ts) and dies with it. */
import type { ShardResult } from '../shard-types';
import { superviseShard } from '../supervise';
import type { LaunchOptions, Launcher, ShardLaunch } from './types';

export class LocalLauncher implements Launcher {
  readonly kind = 'local';

  run(launch: ShardLaunch, opts: LaunchOptions): Promise<ShardResult> {
    // The child must not outlive this attempt, so detaching stops it too.
    const signals = [opts.stop, opts.detach].filter((s): s is AbortSignal => s !== undefined);
    return superviseShard(launch.request, {
      signal: signals.length > 0 ? AbortSignal.any(signals) : undefined,
      onProgress: opts.onProgress,
      onCheckpoint: opts.onCheckpoint,
      env: opts.env,
    });
  }
}
