/**
 * Fencing of a stage's writers.
 *
 * Temporal retries a shard whose heartbeats stopped, but the process of the old attempt may
 * still be alive (a worker cut off from the server, a paused VM): a zombie that keeps training
 * and writing. Each writer therefore takes a lease on the stage folder: `leases/<epoch>.json`,
 * created with O_EXCL at one past the highest epoch present, so two writers never hold the
 * same epoch. A writer checks, before it writes anything (metrics line, checkpoint rename,
 * pruning), that no higher epoch exists; a zombie finds the newer lease and stops with a
 * FencedError instead of writing. The check and the write are not one atomic step, but the
 * window is a readdir wide; and checkpoint folders are only ever created by rename, which never
 * replaces a non-empty folder, so even a write in that window cannot overwrite a newer one.
 */
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';

export const LEASES_DIR = 'leases';
const KEEP_LEASES = 20;

/** A newer writer holds the stage: this one must stop without writing. Retryable by design. */
export class FencedError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'FencedError';
  }
}

export interface LeaseOwner {
  pid: number;
  host: string;
  /** Free-form description: the workflow and activity attempt, or the command. */
  who: string;
}

const EPOCH_FILE = /^(\d{8})\.json$/;

function epochs(dir: string): number[] {
  let names: string[];
  try {
    names = fs.readdirSync(dir);
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === 'ENOENT') return [];
    throw e;
  }
  return names.flatMap((n) => {
    const m = EPOCH_FILE.exec(n);
    return m ? [Number(m[1])] : [];
  });
}

const fileName = (epoch: number): string => `${String(epoch).padStart(8, '0')}.json`;

export class Lease {
  private constructor(
    readonly dir: string,
    readonly epoch: number,
  ) {}

  /** Takes the next epoch of the stage folder's leases. */
  static acquire(stageDir: string, who: string): Lease {
    const dir = path.join(stageDir, LEASES_DIR);
    fs.mkdirSync(dir, { recursive: true });
    const owner: LeaseOwner = { pid: process.pid, host: os.hostname(), who };
    for (;;) {
      const epoch = Math.max(0, ...epochs(dir)) + 1;
      try {
        fs.writeFileSync(
          path.join(dir, fileName(epoch)),
          `${JSON.stringify({ epoch, ...owner, at: new Date().toISOString() })}\n`,
          { flag: 'wx' },
        );
      } catch (e) {
        if ((e as NodeJS.ErrnoException).code === 'EEXIST') continue; // another writer took it first
        throw e;
      }
      for (const old of epochs(dir).filter((x) => x <= epoch - KEEP_LEASES))
        fs.rmSync(path.join(dir, fileName(old)), { force: true });
      return new Lease(dir, epoch);
    }
  }

  /** Throws FencedError if a newer lease exists. */
  check(what: string): void {
    const newer = Math.max(0, ...epochs(this.dir));
    if (newer <= this.epoch) return;
    let holder = '';
    try {
      const o = JSON.parse(fs.readFileSync(path.join(this.dir, fileName(newer)), 'utf8')) as LeaseOwner;
      holder = ` (${o.who}, pid ${o.pid} on ${o.host})`;
    } catch {
      /* the holder's description is only for the message */
    }
    throw new FencedError(
      `fenced: lease ${this.epoch} on ${path.dirname(this.dir)} was superseded by lease ${newer}${holder}; this writer stops before ${what} and writes nothing more`,
    );
  }
}
