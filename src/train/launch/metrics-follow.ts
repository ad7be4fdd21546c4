/**
 * Follows files that grow by whole lines, the way `tail -f` would but by polling (inotify does
 * not see writes made on another node of a shared file system): a stage's metrics.jsonl, whose
 * lines become the stage's ShardProgress, and a Slurm trainer's checkpoint events. A line still
 * being written waits for the next read.
 */
import * as fs from 'node:fs';
import type { ShardProgress } from '../../shared/types';
import { isValidationLine, type MetricsLine, type ValidationLine } from '../metrics';

export class LineFollower {
  private partial = '';

  constructor(
    private readonly file: string,
    private offset: number,
  ) {}

  /** The complete lines appended since the last read. */
  async read(): Promise<string[]> {
    let fh: fs.promises.FileHandle;
    try {
      fh = await fs.promises.open(this.file, 'r');
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code === 'ENOENT') return [];
      throw e;
    }
    let text = '';
    try {
      const size = (await fh.stat()).size;
      if (size < this.offset) [this.offset, this.partial] = [0, '']; // replaced by a shorter file: start over
      if (size === this.offset) return [];
      const buf = Buffer.alloc(size - this.offset);
      const { bytesRead } = await fh.read(buf, 0, buf.length, this.offset);
      this.offset += bytesRead;
      text = this.partial + buf.subarray(0, bytesRead).toString('utf8');
    } finally {
      await fh.close();
    }
    const lines = text.split('\n');
    this.partial = lines.pop() ?? '';
    return lines.filter((l) => l.trim() !== '');
  }
}

/** The progress of a stage's metrics.jsonl lines from a byte offset on. */
export class MetricsFollower {
  private readonly lines: LineFollower;
  /** The last validation loss read, and the step it was measured after. */
  private val: { valLoss: number; valStep: number } | undefined;

  constructor(
    file: string,
    offset: number,
    private readonly stage: string,
    private readonly totalSteps: number,
  ) {
    this.lines = new LineFollower(file, offset);
  }

  /** Progress of the lines appended since the last read (oldest first). */
  async read(): Promise<ShardProgress[]> {
    return (await this.lines.read()).flatMap((l) => {
      const p = this.progress(l);
      return p ? [p] : [];
    });
  }

  private progress(line: string): ShardProgress | undefined {
    let m: MetricsLine | ValidationLine;
    try {
      m = JSON.parse(line) as MetricsLine | ValidationLine;
    } catch {
      return undefined;
    }
    if (m.stage !== this.stage || typeof m.step !== 'number') return undefined;
    // A validation line is no step: its value rides on the next progress reports, as a local shard's does.
    if (isValidationLine(m)) {
      if (typeof m.val_loss === 'number') this.val = { valLoss: m.val_loss, valStep: m.step };
      return undefined;
    }
    return {
      stage: m.stage,
      step: m.step,
      totalSteps: this.totalSteps,
      loss: m.loss,
      gradNorm: m.grad_norm,
      stepSeconds: m.step_time,
      ...this.val,
      ...(typeof m.backend === 'string' ? { backend: m.backend } : {}),
      ...(typeof m.device === 'string' ? { device: m.device } : {}),
    };
  }
}

/** Bytes in a file (0 when it does not exist yet). */
export function fileSize(file: string): number {
  try {
    return fs.statSync(file).size;
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === 'ENOENT') return 0;
    throw e;
  }
}
