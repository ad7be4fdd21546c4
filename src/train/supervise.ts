/**
 * Starts a training child for one shard and supervises it: parses its progress lines, asks it
 * to stop (checkpoint and return) on abort, kills it if it does not, and turns its end into a
 * result or an error. The child is killed if this process exits.
 */
import { spawn } from 'node:child_process';
import * as path from 'node:path';
import * as readline from 'node:readline';
import { asUserErrorKind, UserError } from '../errors';
import { logger } from '../log';
import { decode } from './protocol';
import type { CheckpointSaved, ShardProgress, ShardRequest, ShardResult } from './shard-types';

export interface SuperviseOptions {
  onProgress?: (p: ShardProgress) => void;
  onCheckpoint?: (c: CheckpointSaved) => void;
  /** Aborting asks the child to save a checkpoint and return; the promise then resolves with its result. */
  signal?: AbortSignal;
  /** Seconds to wait for a stopping child before SIGKILL (default 120). */
  stopGraceSeconds?: number;
  env?: NodeJS.ProcessEnv;
  /**
   * The child's script and argument (default: the built-in trainer, child.js with the request).
   * The engine runner (src/engine/child.ts) speaks the same protocol and reports its trainer's
   * process group ("started"), which is killed with it as a last resort.
   */
  entry?: { script: string; arg: string };
}

const CHILD = path.join(__dirname, 'child.js');

/** Errors of a child that ended without a result: retryable. */
export class ChildFailedError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'ChildFailedError';
  }
}

export function superviseShard(req: ShardRequest, opts: SuperviseOptions = {}): Promise<ShardResult> {
  return new Promise((resolve, reject) => {
    const entry = opts.entry ?? { script: CHILD, arg: JSON.stringify(req) };
    const child = spawn(process.execPath, [entry.script, entry.arg], {
      stdio: ['pipe', 'pipe', 'inherit'],
      env: { ...process.env, ...opts.env },
    });
    const log = logger.child({ ...req.logContext, childPid: child.pid });
    let result: ShardResult | undefined;
    let failure: { message: string; userError: boolean; kind: string } | undefined;
    let killTimer: NodeJS.Timeout | undefined;
    /** An external trainer's process group (the engine runner's "started"). */
    let trainerGroup: number | undefined;
    const killAll = (): void => {
      child.kill('SIGKILL');
      if (trainerGroup === undefined) return;
      try {
        process.kill(-trainerGroup, 'SIGKILL');
      } catch {
        /* gone */
      }
    };
    const killOnExit = (): void => {
      killAll();
    };
    process.once('exit', killOnExit);
    const onAbort = (): void => {
      log.info('asking the training child to checkpoint and stop');
      child.stdin.write('stop\n');
      killTimer = setTimeout(
        () => {
          log.warn('training child did not stop in time; killing it');
          killAll();
        },
        (opts.stopGraceSeconds ?? 120) * 1000,
      );
    };
    if (opts.signal?.aborted) onAbort();
    else opts.signal?.addEventListener('abort', onAbort, { once: true });
    child.stdin.on('error', () => {
      /* child gone; the exit handler reports it */
    });
    const rl = readline.createInterface({ input: child.stdout });
    rl.on('line', (line) => {
      const m = decode(line);
      if (!m) {
        if (line.trim()) log.debug({ line }, 'training child output');
        return;
      }
      switch (m.ttt) {
        case 'progress': {
          const { ttt: _t, ...p } = m;
          opts.onProgress?.(p);
          break;
        }
        case 'checkpoint': {
          const { ttt: _t, ...c } = m;
          opts.onCheckpoint?.(c);
          break;
        }
        case 'result':
          result = m.result;
          break;
        case 'started':
          trainerGroup = m.pid;
          break;
        case 'error':
          failure = { message: m.message, userError: m.userError, kind: m.kind };
          break;
      }
    });
    child.on('close', (code, sig) => {
      process.removeListener('exit', killOnExit);
      if (killTimer) clearTimeout(killTimer);
      opts.signal?.removeEventListener('abort', onAbort);
      if (result) return resolve(result);
      if (failure?.userError) return reject(new UserError(failure.message, { kind: asUserErrorKind(failure.kind) }));
      if (failure) return reject(new ChildFailedError(`training child failed: ${failure.message}`));
      reject(
        new ChildFailedError(`training child exited (${sig ? `signal ${sig}` : `code ${code}`}) without a result`),
      );
    });
    child.on('error', (e) => reject(new ChildFailedError(`cannot start the training child: ${e.message}`)));
  });
}
