/**
 * What an external engine leaves in the stage folder, under <stage>/engine/:
 *
 *   engine.json        which engine trained the stage and where its checkpoints are (EngineRecord);
 *                      inspectStage and promoteStage read the stage through it
 *   config.<format>.toml  the stage config written out for the trainer ({config}), in the
 *                      preset's config_format
 *   runs.jsonl         one line per run of the trainer under the local launcher (EngineRun): how
 *                      it ended; consecutive failed starts end the stage (launcher.max_failed_starts)
 *   output.log         the trainer's output under the local launcher (under Slurm: slurm/<id>.out)
 */
import * as fs from 'node:fs';
import * as path from 'node:path';
import { writeAtomically } from '../train/launch/slurm-files';
import type { LayoutName } from './registry';
import type { ConfigFormat } from './types';

export interface EngineRecord {
  preset: string;
  layout: LayoutName;
  /** Where the layout reads the stage's checkpoints. */
  runDir: string;
  /** When a shard last started with it. */
  at: string;
}

export interface EngineRun {
  at: string;
  /** The trainer's exit code, or the signal that ended it. */
  exit: string;
  startStep: number;
  endStep: number;
  /** It reported progress or wrote a newer complete checkpoint. */
  progressed: boolean;
  /** Asked to stop (pause, cancel, the shard's bound): its end is no failure. */
  stopped: boolean;
  /** It ended with a result (exit code 0, or stopped and a complete checkpoint to report). */
  result: boolean;
}

export const engineDir = (stageDirPath: string): string => path.join(stageDirPath, 'engine');

export class StageEngineFiles {
  readonly dir: string;

  constructor(stageDirPath: string) {
    this.dir = engineDir(stageDirPath);
  }

  ensure(): void {
    fs.mkdirSync(this.dir, { recursive: true });
  }

  readonly record = (): string => path.join(this.dir, 'engine.json');
  readonly config = (format: ConfigFormat): string => path.join(this.dir, `config.${format}.toml`);
  readonly runs = (): string => path.join(this.dir, 'runs.jsonl');
  readonly output = (): string => path.join(this.dir, 'output.log');

  readRecord(): EngineRecord | undefined {
    try {
      return JSON.parse(fs.readFileSync(this.record(), 'utf8')) as EngineRecord;
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
      throw e;
    }
  }

  writeRecord(r: EngineRecord): void {
    this.ensure();
    writeAtomically(this.record(), r);
  }

  /** The built-in engine trains the stage now: its own checkpoints decide. */
  clearRecord(): void {
    fs.rmSync(this.record(), { force: true });
  }

  recordRun(r: EngineRun): void {
    this.ensure();
    fs.appendFileSync(this.runs(), `${JSON.stringify(r)}\n`);
  }

  /** The runs recorded so far, oldest first (none before the first). */
  recordedRuns(): EngineRun[] {
    let lines: string[] = [];
    try {
      lines = fs.readFileSync(this.runs(), 'utf8').split('\n').filter(Boolean);
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code !== 'ENOENT') throw e;
    }
    return lines.map((l) => JSON.parse(l) as EngineRun);
  }

  /** Consecutive runs, newest first, that ended without progress, without a result and unasked: failed starts. */
  failedStarts(): EngineRun[] {
    const out: EngineRun[] = [];
    for (const r of this.recordedRuns().reverse()) {
      if (r.stopped) continue;
      if (r.progressed || r.result) break;
      out.push(r);
    }
    return out;
  }

  /** The last lines of the trainer's output under the local launcher. */
  outputTail(lines = 15): string {
    return fileTail(this.output(), lines);
  }
}

/** The last `lines` lines of a file (at most its last 8 KiB). */
export function fileTail(file: string, lines = 15): string {
  try {
    const fd = fs.openSync(file, 'r');
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
    return `(no output in ${file})`;
  }
}
