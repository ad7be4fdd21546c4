/**
 * What a stage's Slurm jobs leave in the stage folder, under <stage>/slurm/ on the shared file
 * system, so that any worker can pick up where another one stopped:
 *
 *   job.sh              the batch script (setup lines, then the trainer)
 *   request.json        the shard the next job trains (ShardRequest)
 *   <id>.job.json       submitted: by whom, when, and where metrics.jsonl stood (SubmittedJob)
 *   <id>.out            the job's output (sbatch --output)
 *   <id>.result.json    written by the trainer at its end: the line protocol's result or error message
 *   <id>.checkpoints.jsonl  the trainer's checkpoint saves, as the line protocol's checkpoint messages
 *   <id>.ended.json     written by the worker that saw the job end and handled it (EndedJob)
 */
import * as fs from 'node:fs';
import * as path from 'node:path';
import type { ChildMessage } from '../protocol';

export const slurmDir = (stageDirPath: string): string => path.join(stageDirPath, 'slurm');

export interface SubmittedJob {
  jobId: string;
  name: string;
  submittedAt: string;
  by: string;
  /** Size of metrics.jsonl when the job was submitted: its own lines start there. */
  metricsBytes: number;
}

export interface EndedJob {
  jobId: string;
  /** Slurm's final state (COMPLETED, CANCELLED, TIMEOUT, FAILED, ..., GONE when already purged). */
  state: string;
  exitCode: string;
  /** What the trainer reported: a result, an error, nothing (it never started or was killed). */
  outcome: 'result' | 'error' | 'none';
  /** Whether metrics.jsonl grew while the job ran (it trained at least one step). */
  progressed: boolean;
  /** A worker asked it to stop (pause, cancel): its end is no failure. */
  stopped: boolean;
  at: string;
}

export class StageSlurmFiles {
  readonly dir: string;

  constructor(stageDirPath: string) {
    this.dir = slurmDir(stageDirPath);
  }

  ensure(): void {
    fs.mkdirSync(this.dir, { recursive: true });
  }

  readonly script = (): string => path.join(this.dir, 'job.sh');
  readonly request = (): string => path.join(this.dir, 'request.json');
  readonly output = (id: string): string => path.join(this.dir, `${id}.out`);
  readonly result = (id: string): string => path.join(this.dir, `${id}.result.json`);
  readonly checkpoints = (id: string): string => path.join(this.dir, `${id}.checkpoints.jsonl`);
  /** sbatch's --output pattern of the same file. */
  readonly outputPattern = (): string => path.join(this.dir, '%j.out');

  /** Job ids that were submitted for this stage, oldest first. */
  submitted(): string[] {
    let names: string[] = [];
    try {
      names = fs.readdirSync(this.dir);
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code !== 'ENOENT') throw e;
    }
    return names.flatMap((n) => /^(\d+)\.job\.json$/.exec(n)?.[1] ?? []).sort((a, b) => Number(a) - Number(b));
  }

  submission(id: string): SubmittedJob | undefined {
    return readJson<SubmittedJob>(path.join(this.dir, `${id}.job.json`));
  }

  recordSubmission(s: SubmittedJob): void {
    writeAtomically(path.join(this.dir, `${s.jobId}.job.json`), s);
  }

  ended(id: string): EndedJob | undefined {
    return readJson<EndedJob>(path.join(this.dir, `${id}.ended.json`));
  }

  recordEnd(e: EndedJob): void {
    writeAtomically(path.join(this.dir, `${e.jobId}.ended.json`), e);
  }

  /** The trainer's outcome message, once it wrote one. */
  outcome(id: string): ChildMessage | undefined {
    return readJson<ChildMessage>(this.result(id));
  }

  /**
   * Consecutive ended jobs, newest first, that trained nothing and reported no result: failed
   * start-ups (an error outcome without a trained step counts: an external trainer that exits
   * non-zero at its start, every time).
   */
  failedStarts(): string[] {
    const out: string[] = [];
    for (const id of this.submitted().reverse()) {
      const e = this.ended(id);
      if (!e || e.stopped) continue;
      if (e.outcome === 'result' || e.progressed) break;
      out.push(id);
    }
    return out;
  }

  /** The last lines of a job's output. */
  outputTail(id: string, lines = 15): string {
    try {
      const fd = fs.openSync(this.output(id), 'r');
      try {
        const size = fs.fstatSync(fd).size;
        const n = Math.min(size, 8192);
        const buf = Buffer.alloc(n);
        fs.readSync(fd, buf, 0, n, size - n);
        return buf.toString('utf8').trimEnd().split('\n').slice(-lines).join('\n');
      } finally {
        fs.closeSync(fd);
      }
    } catch {
      return `(no output in ${this.output(id)})`;
    }
  }
}

function readJson<T>(file: string): T | undefined {
  let text: string;
  try {
    text = fs.readFileSync(file, 'utf8');
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
    throw e;
  }
  return JSON.parse(text) as T;
}

export function writeAtomically(file: string, data: unknown): void {
  const tmp = `${file}.tmp-${process.pid}`;
  fs.writeFileSync(tmp, typeof data === 'string' ? data : `${JSON.stringify(data)}\n`);
  fs.renameSync(tmp, file);
}

/** A word for a POSIX shell: single-quoted. */
export function shellQuote(s: string): string {
  return `'${s.replace(/'/g, `'\\''`)}'`;
}
